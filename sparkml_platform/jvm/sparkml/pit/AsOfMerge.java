package sparkml.pit;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;

import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.api.java.function.FlatMapFunction;
import org.apache.spark.api.java.function.FlatMapFunction2;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.catalyst.expressions.GenericInternalRow;
import org.apache.spark.sql.catalyst.expressions.InterpretedOrdering;
import org.apache.spark.sql.catalyst.expressions.UnsafeRow;
import org.apache.spark.sql.catalyst.util.ArrayData;
import org.apache.spark.sql.catalyst.util.MapData;
import org.apache.spark.sql.classic.SparkSession;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.unsafe.types.UTF8String;
import scala.jdk.javaapi.CollectionConverters;
import scala.reflect.ClassTag$;

/**
 * The point-in-time join as a sort-merge scan (used by sparkml_platform/pit.py).
 *
 * The label frame and every feature frame arrive hash-partitioned by the join keys into the
 * same number of partitions, each sorted within its partitions: labels by (keys, time nulls
 * last), feature rows by (keys, time, tie). Their first columns are the keys, then the time.
 * Partition by partition, one pass over each feature frame beside the labels keeps the newest
 * feature row at or before the current label row; the label row gets that row's payload (the
 * feature frame's columns after `skip`) and a found flag. Each frame is shuffled and sorted
 * on its own, with its own columns only, as a sort-merge equi-join would; no label row is
 * ever paired with more than one feature row.
 */
public final class AsOfMerge {
  private AsOfMerge() {}

  public static Dataset<Row> join(Dataset<Row> labels, int keys, boolean dateTime,
                                  List<Dataset<Row>> features, List<Integer> skips, List<String> prefixes) {
    StructType labelSchema = labels.schema();
    List<StructField> out = new ArrayList<>(List.of(labelSchema.fields()));
    List<Integer> offsets = new ArrayList<>();
    for (int i = 0; i < features.size(); i++) {
      StructField[] fields = features.get(i).schema().fields();
      offsets.add(out.size());
      for (int j = skips.get(i); j < fields.length; j++) {
        out.add(DataTypes.createStructField(prefixes.get(i) + fields[j].name(), fields[j].dataType(), true));
      }
      out.add(DataTypes.createStructField(prefixes.get(i) + "found", DataTypes.BooleanType, false));
    }
    StructType schema = DataTypes.createStructType(out);
    List<DataType> keyTypes = new ArrayList<>();
    for (int k = 0; k < keys; k++) keyTypes.add(labelSchema.fields()[k].dataType());

    JavaRDD<InternalRow> rows = rdd(labels).map(new Widen(types(labelSchema), schema.size()));
    for (int i = 0; i < features.size(); i++) {
      JavaRDD<InternalRow> right = rdd(features.get(i));
      if (right.getNumPartitions() != rows.getNumPartitions()) {
        // Only a frame the optimizer knows is empty loses its shuffle (and partition count).
        if (right.isEmpty()) {
          right = emptyLike(rows);
        } else if (rows.isEmpty()) {
          rows = emptyLike(right);
        } else {
          throw new IllegalArgumentException("feature frame " + i + " has " + right.getNumPartitions()
              + " partitions, the labels " + rows.getNumPartitions() + ": both must be partitioned alike");
        }
      }
      rows = rows.zipPartitions(right, new Merge(keyTypes, keys, dateTime, types(features.get(i).schema()),
          skips.get(i), offsets.get(i)));
    }
    SparkSession session = (SparkSession) ((org.apache.spark.sql.classic.Dataset<Row>) labels).sparkSession();
    return session.internalCreateDataFrame(rows.rdd(), schema, false);
  }

  /**
   * The frame's rows, planned without adaptive execution: an adaptive plan runs its shuffles
   * when its RDD is asked for, one frame after the other; planned plainly, the join's one job
   * runs every frame's shuffle at once, and their partitionings stay exactly as asked.
   */
  private static JavaRDD<InternalRow> rdd(Dataset<Row> frame) {
    org.apache.spark.sql.classic.Dataset<Row> classic = (org.apache.spark.sql.classic.Dataset<Row>) frame;
    org.apache.spark.sql.RuntimeConfig conf = classic.sparkSession().conf();
    String key = "spark.sql.adaptive.enabled";
    String before = conf.get(key);
    conf.set(key, "false");
    try {
      return JavaRDD.fromRDD(classic.queryExecution().toRdd(), ClassTag$.MODULE$.apply(InternalRow.class));
    } finally {
      conf.set(key, before);
    }
  }

  private static JavaRDD<InternalRow> emptyLike(JavaRDD<InternalRow> rows) {
    return JavaSparkContext.fromSparkContext(rows.context()).parallelize(List.<InternalRow>of(),
        rows.getNumPartitions());
  }

  private static DataType[] types(StructType schema) {
    StructField[] fields = schema.fields();
    DataType[] out = new DataType[fields.length];
    for (int i = 0; i < fields.length; i++) out[i] = fields[i].dataType();
    return out;
  }

  /** Spark's ascending, nulls-first order on the leading key columns (a long or int key
   * compared directly, any other by Spark's own interpreted ordering). */
  static java.util.Comparator<InternalRow> keyOrder(List<DataType> keyTypes) {
    if (keyTypes.size() == 1 && (keyTypes.get(0) == DataTypes.LongType || keyTypes.get(0) == DataTypes.IntegerType)) {
      boolean wide = keyTypes.get(0) == DataTypes.LongType;
      return (a, b) -> {
        boolean an = a.isNullAt(0), bn = b.isNullAt(0);
        if (an || bn) return an == bn ? 0 : (an ? -1 : 1);
        return wide ? Long.compare(a.getLong(0), b.getLong(0)) : Integer.compare(a.getInt(0), b.getInt(0));
      };
    }
    InterpretedOrdering ordering = InterpretedOrdering.forSchema(CollectionConverters.asScala(keyTypes).toSeq());
    return ordering::compare;
  }

  /** A value kept past the row it came from: sorted rows reuse their buffers. */
  static Object kept(Object value) {
    if (value instanceof UTF8String) return ((UTF8String) value).clone();
    if (value instanceof InternalRow) return ((InternalRow) value).copy();
    if (value instanceof ArrayData) return ((ArrayData) value).copy();
    if (value instanceof MapData) return ((MapData) value).copy();
    return value;
  }

  /** A label row copied into a row wide enough for every lookup's payload and flag. */
  static final class Widen implements org.apache.spark.api.java.function.Function<InternalRow, InternalRow> {
    private final DataType[] types;
    private final int width;

    Widen(DataType[] types, int width) {
      this.types = types;
      this.width = width;
    }

    @Override
    public InternalRow call(InternalRow row) {
      Object[] values = new Object[width];
      for (int j = 0; j < types.length; j++) values[j] = row.isNullAt(j) ? null : kept(row.get(j, types[j]));
      return new GenericInternalRow(values);
    }
  }

  /** One feature frame's pass beside the (widened) label rows of one partition. */
  static final class Merge implements FlatMapFunction2<Iterator<InternalRow>, Iterator<InternalRow>, InternalRow> {
    private final List<DataType> keyTypes;
    private final int time;
    private final boolean dateTime;
    private final DataType[] types;
    private final int skip;
    private final int offset;

    Merge(List<DataType> keyTypes, int time, boolean dateTime, DataType[] types, int skip, int offset) {
      this.keyTypes = keyTypes;
      this.time = time;
      this.dateTime = dateTime;
      this.types = types;
      this.skip = skip;
      this.offset = offset;
    }

    private long timeOf(InternalRow row) {
      return dateTime ? row.getInt(time) : row.getLong(time);
    }

    @Override
    public Iterator<InternalRow> call(Iterator<InternalRow> labels, Iterator<InternalRow> features) {
      java.util.Comparator<InternalRow> byKeys = keyOrder(keyTypes);
      return new Iterator<InternalRow>() {
        private InternalRow pending = features.hasNext() ? features.next() : null;
        private InternalRow newest;  // the last feature row passed, copied

        @Override
        public boolean hasNext() {
          return labels.hasNext();
        }

        @Override
        public InternalRow next() {
          if (!labels.hasNext()) throw new NoSuchElementException();
          GenericInternalRow label = (GenericInternalRow) labels.next();
          boolean untimed = label.isNullAt(time);
          while (pending != null) {
            int order = byKeys.compare(pending, label);
            if (order > 0 || (order == 0 && !untimed && timeOf(pending) > timeOf(label))) break;
            if (pending instanceof UnsafeRow && newest instanceof UnsafeRow) {
              ((UnsafeRow) newest).copyFrom((UnsafeRow) pending);  // reuses its buffer
            } else {
              newest = pending.copy();
            }
            pending = features.hasNext() ? features.next() : null;
          }
          boolean found = newest != null && !untimed && byKeys.compare(newest, label) == 0;
          int slot = offset;
          for (int j = skip; j < types.length; j++, slot++) {
            label.update(slot, found && !newest.isNullAt(j) ? kept(newest.get(j, types[j])) : null);
          }
          label.update(slot, found);
          return label;
        }
      };
    }
  }
}

package sparkml.pit;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;

import org.apache.spark.Dependency;
import org.apache.spark.OneToOneDependency;
import org.apache.spark.Partition;
import org.apache.spark.TaskContext;
import org.apache.spark.rdd.RDD;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.catalyst.expressions.Ascending$;
import org.apache.spark.sql.catalyst.expressions.BoundReference;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.expressions.GenericInternalRow;
import org.apache.spark.sql.catalyst.expressions.InterpretedOrdering;
import org.apache.spark.sql.catalyst.expressions.IsNull;
import org.apache.spark.sql.catalyst.expressions.JoinedRow;
import org.apache.spark.sql.catalyst.expressions.NullsFirst$;
import org.apache.spark.sql.catalyst.expressions.SortOrder;
import org.apache.spark.sql.catalyst.expressions.UnsafeProjection;
import org.apache.spark.sql.catalyst.expressions.UnsafeRow;
import org.apache.spark.sql.catalyst.expressions.XxHash64;
import org.apache.spark.sql.classic.SparkSession;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;
import scala.jdk.javaapi.CollectionConverters;
import scala.reflect.ClassTag;
import scala.reflect.ClassTag$;

/**
 * The point-in-time join as a sort-merge scan (used by sparkml_platform/pit.py).
 *
 * The label frame and every feature frame arrive hash-partitioned by the join keys into the
 * same number of partitions, each sorted within its partitions by (order, keys, time): labels
 * with null times last. Their first column is the order, a long whose upper 32 bits are a hash
 * of the keys and whose lower 32 bits grow with the time (pit.py makes it); then the keys, then
 * the time. Sorting by it first lets the sort decide almost every comparison by its 64-bit
 * prefix: sorted by the keys first, every row of a key ties on the prefix with the key's other
 * rows, and each such tie costs a comparison of whole rows. A key's rows still come in time
 * order; rows of keys whose hashes collide interleave, so the pass keeps the newest row of each
 * key of the current hash (almost always one).
 *
 * Partition by partition, one pass over the labels and all feature frames together keeps, per
 * frame, the newest feature row at or before the current label row; the output row (written by
 * one generated projection, no per-value objects) is the label row, then per frame its payload
 * (the columns after its keys and time) or nulls, and a found flag. Each frame is shuffled and
 * sorted on its own, with its own columns only, as a sort-merge equi-join would; no label row
 * is ever paired with more than one feature row.
 *
 * Ties: rows of one frame with the same keys and time are decided here, not by the sort:
 * the greatest 64-bit hash of the first `ties` payload columns and of which of them are null
 * (Spark's xxhash64, seed 42) wins, so the result never depends on the rows' order. It is
 * computed only where two such rows meet; a frame with `ties` < 0 has unique times.
 */
public final class AsOfMerge {
  private AsOfMerge() {}

  private static final ClassTag<InternalRow> ROWS = ClassTag$.MODULE$.apply(InternalRow.class);

  public static Dataset<Row> join(Dataset<Row> labels, int keys, boolean dateTime,
                                  List<Dataset<Row>> features, List<Integer> ties,
                                  List<String> prefixes) {
    StructType labelSchema = labels.schema();
    List<StructField> out = new ArrayList<>(List.of(labelSchema.fields()));
    List<DataType[]> types = new ArrayList<>();
    for (int i = 0; i < features.size(); i++) {
      StructField[] fields = features.get(i).schema().fields();
      types.add(types(features.get(i).schema()));
      for (int j = keys + 2; j < fields.length; j++) {
        out.add(DataTypes.createStructField(prefixes.get(i) + fields[j].name(), fields[j].dataType(), true));
      }
      out.add(DataTypes.createStructField(prefixes.get(i) + "found", DataTypes.BooleanType, false));
    }
    StructType schema = DataTypes.createStructType(out);
    SparkSession session = (SparkSession) ((org.apache.spark.sql.classic.Dataset<Row>) labels).sparkSession();

    RDD<InternalRow> left = rdd(labels);
    int parts = left.getNumPartitions();
    List<RDD<InternalRow>> rights = new ArrayList<>();
    for (int i = 0; i < features.size(); i++) {
      RDD<InternalRow> right = rdd(features.get(i));
      if (right.getNumPartitions() != parts) {
        // Only a frame the optimizer knows is empty loses its shuffle (and partition count).
        if (right.isEmpty()) {
          right = empty(session, parts);
        } else if (left.isEmpty()) {
          return session.internalCreateDataFrame(empty(session, 1), schema, false);
        } else {
          throw new IllegalArgumentException("feature frame " + i + " has " + right.getNumPartitions()
              + " partitions, the labels " + parts + ": both must be partitioned alike");
        }
      }
      rights.add(right);
    }
    Scan scan = new Scan(types(labelSchema), keys, dateTime, types, ties);
    return session.internalCreateDataFrame(new Zipped(left, rights, scan), schema, false);
  }

  /**
   * The frame's rows, planned without adaptive execution: an adaptive plan runs its shuffles
   * when its RDD is asked for, one frame after the other; planned plainly, the join's one job
   * runs every frame's shuffle at once, and their partitionings stay exactly as asked.
   */
  static RDD<InternalRow> rdd(Dataset<Row> frame) {
    org.apache.spark.sql.classic.Dataset<Row> classic = (org.apache.spark.sql.classic.Dataset<Row>) frame;
    org.apache.spark.sql.RuntimeConfig conf = classic.sparkSession().conf();
    String key = "spark.sql.adaptive.enabled";
    String before = conf.get(key);
    conf.set(key, "false");
    try {
      return classic.queryExecution().toRdd();
    } finally {
      conf.set(key, before);
    }
  }

  static RDD<InternalRow> empty(SparkSession session, int parts) {
    return session.sparkContext().parallelize(CollectionConverters.asScala(List.<InternalRow>of()).toSeq(),
        parts, ROWS);
  }

  static DataType[] types(StructType schema) {
    StructField[] fields = schema.fields();
    DataType[] out = new DataType[fields.length];
    for (int i = 0; i < fields.length; i++) out[i] = fields[i].dataType();
    return out;
  }

  /** Whether `row` (its time `rowTime`) sorts at or before `label` (its time `at`) in the
   * scans' order, (order, keys, time): what a pass takes before answering the label. A label
   * without a time takes every row of its key. */
  static boolean passed(InternalRow row, long rowTime, InternalRow label, boolean untimed, long at,
                        Comparator<InternalRow> byKeys) {
    int cmp = Long.compare(row.getLong(0), label.getLong(0));
    if (cmp == 0) cmp = byKeys.compare(row, label);
    return cmp < 0 || (cmp == 0 && (untimed || rowTime <= at));
  }

  /** Spark's ascending, nulls-first order on the key columns, which follow the order column
   * (a long or int key compared directly, any other by Spark's own interpreted ordering). */
  static Comparator<InternalRow> keyOrder(DataType[] keyTypes) {
    if (keyTypes.length == 1 && (keyTypes[0] == DataTypes.LongType || keyTypes[0] == DataTypes.IntegerType)) {
      boolean wide = keyTypes[0] == DataTypes.LongType;
      return (a, b) -> {
        boolean an = a.isNullAt(1), bn = b.isNullAt(1);
        if (an || bn) return an == bn ? 0 : (an ? -1 : 1);
        return wide ? Long.compare(a.getLong(1), b.getLong(1)) : Integer.compare(a.getInt(1), b.getInt(1));
      };
    }
    List<SortOrder> orders = new ArrayList<>();
    for (int i = 0; i < keyTypes.length; i++) {
      orders.add(new SortOrder(new BoundReference(i + 1, keyTypes[i], true), Ascending$.MODULE$,
          NullsFirst$.MODULE$, CollectionConverters.asScala(List.<Expression>of()).toSeq()));
    }
    InterpretedOrdering ordering = new InterpretedOrdering(CollectionConverters.asScala(orders).toSeq());
    return ordering::compare;
  }

  /** One pass over a partition of the labels beside the same partition of every other frame
   * (this join's Scan, WindowSweep's Sweep): what runs on the executors. */
  interface Pass extends java.io.Serializable {
    Iterator<InternalRow> over(Iterator<InternalRow> labels, List<Iterator<InternalRow>> sides);
  }

  /** The labels' partitions beside the same partitions of every feature frame. */
  static final class Zipped extends RDD<InternalRow> {
    private final RDD<InternalRow> labels;
    private final List<RDD<InternalRow>> features;
    private final Pass scan;

    Zipped(RDD<InternalRow> labels, List<RDD<InternalRow>> features, Pass scan) {
      super(labels.context(), dependencies(labels, features), ROWS);
      this.labels = labels;
      this.features = features;
      this.scan = scan;
    }

    private static scala.collection.immutable.Seq<Dependency<?>> dependencies(
        RDD<InternalRow> labels, List<RDD<InternalRow>> features) {
      List<Dependency<?>> deps = new ArrayList<>();
      deps.add(new OneToOneDependency<>(labels));
      for (RDD<InternalRow> f : features) deps.add(new OneToOneDependency<>(f));
      return CollectionConverters.asScala(deps).toList();
    }

    @Override
    public Partition[] getPartitions() {
      Partition[] own = labels.partitions();
      Partition[] out = new Partition[own.length];
      for (int p = 0; p < own.length; p++) {
        Partition[] sides = new Partition[features.size()];
        for (int i = 0; i < sides.length; i++) sides[i] = features.get(i).partitions()[p];
        out[p] = new Part(p, own[p], sides);
      }
      return out;
    }

    @Override
    public scala.collection.Iterator<InternalRow> compute(Partition split, TaskContext context) {
      Part part = (Part) split;
      List<Iterator<InternalRow>> sides = new ArrayList<>();
      for (int i = 0; i < features.size(); i++) {
        sides.add(CollectionConverters.asJava(features.get(i).iterator(part.sides[i], context)));
      }
      return CollectionConverters.asScala(scan.over(CollectionConverters.asJava(labels.iterator(part.labels, context)), sides));
    }
  }

  static final class Part implements Partition {
    private final int index;
    final Partition labels;
    final Partition[] sides;

    Part(int index, Partition labels, Partition[] sides) {
      this.index = index;
      this.labels = labels;
      this.sides = sides;
    }

    @Override
    public int index() {
      return index;
    }

    @Override
    public int hashCode() {
      return index;
    }

    @Override
    public boolean equals(Object other) {
      return this == other;
    }
  }

  /** The pass over one partition: what runs on the executors (serializable, no Spark state). */
  static final class Scan implements Pass {
    private final DataType[] labelTypes;
    private final int keys;  // the key columns follow the order column; then the time
    private final boolean dateTime;
    private final List<DataType[]> types;
    private final List<Integer> ties;

    Scan(DataType[] labelTypes, int keys, boolean dateTime, List<DataType[]> types, List<Integer> ties) {
      this.labelTypes = labelTypes;
      this.keys = keys;
      this.dateTime = dateTime;
      this.types = types;
      this.ties = ties;
    }

    private long timeOf(InternalRow row) {
      return dateTime ? row.getInt(keys + 1) : row.getLong(keys + 1);
    }

    /** Label row, then per frame its row (or a row of nulls), then the flags: the one
     * projection reads it through nested JoinedRows and writes the output row. */
    private UnsafeProjection projection() {
      List<Expression> exprs = new ArrayList<>();
      int base = 0;
      for (DataType t : labelTypes) exprs.add(new BoundReference(base++, t, true));
      int flags = labelTypes.length;
      for (DataType[] t : types) flags += t.length;
      for (int i = 0; i < types.size(); i++) {
        DataType[] t = types.get(i);
        for (int j = keys + 2; j < t.length; j++) exprs.add(new BoundReference(base + j, t[j], true));
        exprs.add(new BoundReference(flags + i, DataTypes.BooleanType, false));
        base += t.length;
      }
      return UnsafeProjection.create(CollectionConverters.asScala(exprs).toSeq());
    }

    /** Spark's xxhash64 of a frame's first `ties` payload columns and their null flags. */
    private Expression tieHash(int i) {
      DataType[] t = types.get(i);
      List<Expression> parts = new ArrayList<>();
      for (int j = keys + 2; j < keys + 2 + ties.get(i); j++) {
        BoundReference value = new BoundReference(j, t[j], true);
        parts.add(value);
        parts.add(new IsNull(value));
      }
      return new XxHash64(CollectionConverters.asScala(parts).toSeq());
    }

    @Override
    public Iterator<InternalRow> over(Iterator<InternalRow> labels, List<Iterator<InternalRow>> sides) {
      int n = sides.size();
      DataType[] keyTypes = java.util.Arrays.copyOfRange(labelTypes, 1, keys + 1);
      Comparator<InternalRow> byKeys = keyOrder(keyTypes);
      UnsafeProjection project = projection();
      InternalRow[] pending = new InternalRow[n];
      Newest[] newest = new Newest[n];
      InternalRow[] nulls = new InternalRow[n];
      GenericInternalRow flags = new GenericInternalRow(n);
      JoinedRow[] joins = new JoinedRow[n];
      JoinedRow top = new JoinedRow();
      for (int i = n - 1; i >= 0; i--) {
        Iterator<InternalRow> side = sides.get(i);
        pending[i] = side.hasNext() ? side.next() : null;
        newest[i] = new Newest(types.get(i), ties.get(i) >= 0 ? tieHash(i) : null, byKeys);
        nulls[i] = new GenericInternalRow(types.get(i).length);
        joins[i] = new JoinedRow(nulls[i], i == n - 1 ? flags : joins[i + 1]);
      }
      top.withRight(n > 0 ? joins[0] : flags);
      return new Iterator<InternalRow>() {
        @Override
        public boolean hasNext() {
          return labels.hasNext();
        }

        @Override
        public InternalRow next() {
          if (!labels.hasNext()) throw new NoSuchElementException();
          InternalRow label = labels.next();
          boolean untimed = label.isNullAt(keys + 1);
          long at = untimed ? 0 : timeOf(label);
          for (int i = 0; i < n; i++) {
            Iterator<InternalRow> side = sides.get(i);
            InternalRow row = pending[i];
            while (row != null && passed(row, timeOf(row), label, untimed, at, byKeys)) {
              newest[i].take(row);
              row = side.hasNext() ? side.next() : null;
            }
            pending[i] = row;
            UnsafeRow found = untimed ? null : newest[i].of(label);
            joins[i].withLeft(found != null ? found : nulls[i]);
            flags.update(i, found != null);
          }
          return project.apply(top.withLeft(label));
        }
      };
    }

    /** One frame's newest passed row of each key whose hash (the order's upper 32 bits) is
     * the current one: one key, unless hashes collide. The rows are copies, reused. */
    private final class Newest {
      private final DataType[] types;
      private final Expression tie;  // null: unique times
      private final Comparator<InternalRow> byKeys;
      private final List<Kept> kept = new ArrayList<>();  // [0, used) belong to `hash`
      private int used;
      private long hash;
      private UnsafeProjection unsafe;

      Newest(DataType[] types, Expression tie, Comparator<InternalRow> byKeys) {
        this.types = types;
        this.tie = tie;
        this.byKeys = byKeys;
      }

      private Kept find(InternalRow keyed) {
        for (int k = 0; k < used; k++) {
          if (byKeys.compare(kept.get(k).row, keyed) == 0) return kept.get(k);
        }
        return null;
      }

      /** The kept row of the label's key, or null. */
      UnsafeRow of(InternalRow label) {
        if (used == 0 || (label.getLong(0) >> 32) != hash) return null;
        Kept k = find(label);
        return k == null ? null : k.row;
      }

      /** `row` passed: it is its key's newest unless it ties with that and hashes lower. */
      void take(InternalRow row) {
        long h = row.getLong(0) >> 32;
        if (used == 0 || h != hash) {
          used = 0;
          hash = h;
        }
        Kept k = find(row);
        if (k == null) {
          if (used == kept.size()) kept.add(new Kept());
          k = kept.get(used++);
          k.tieKnown = false;
        } else if (tie != null && timeOf(row) == timeOf(k.row)) {
          if (!k.tieKnown) {
            k.tie = (Long) tie.eval(k.row);
            k.tieKnown = true;
          }
          long hashed = (Long) tie.eval(row);
          if (hashed <= k.tie) return;
          k.tie = hashed;
        } else {
          k.tieKnown = false;
        }
        UnsafeRow given = row instanceof UnsafeRow ? (UnsafeRow) row : toUnsafe(row);
        if (k.row != null) {
          k.row.copyFrom(given);  // reuses its buffer
        } else {
          k.row = given.copy();
        }
      }

      private UnsafeRow toUnsafe(InternalRow row) {
        if (unsafe == null) unsafe = UnsafeProjection.create(types);
        return unsafe.apply(row);
      }
    }

    /** A key's newest row, and its tie-break hash once a tie needed it. */
    private static final class Kept {
      UnsafeRow row;
      long tie;
      boolean tieKnown;
    }
  }
}

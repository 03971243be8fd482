package sparkml.pit;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;

import org.apache.spark.rdd.RDD;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.catalyst.expressions.BoundReference;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.expressions.GenericInternalRow;
import org.apache.spark.sql.catalyst.expressions.JoinedRow;
import org.apache.spark.sql.catalyst.expressions.UnsafeProjection;
import org.apache.spark.sql.classic.SparkSession;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;
import scala.jdk.javaapi.CollectionConverters;

/**
 * Window aggregates as of each label row's time in one pass over each key's events and labels
 * (used by sparkml_platform/storage/window_aggregates.py when every function asked is one of
 * count, sum, mean, min, max, stddev, first and last).
 *
 * Both frames arrive hash-partitioned by the keys into the same number of partitions and
 * sorted within them by (order, keys, at), as AsOfMerge's inputs are: the order column first
 * (AsOfMerge's: a hash of the keys above the time in seconds), then the keys, then `at`, the
 * time in microseconds (an event's: when it became visible); labels without a time last. An
 * event passes a label when it sorts at or before it, so a label at t has taken every event of
 * its key visible at or before t; each finite window then drops its events visible at or
 * before t - w, leaving t - w < at <= t. Per key and per (input, window), the window's
 * non-null values are kept in time order with running aggregates: a sum, Welford's mean and
 * squared deviations (added and removed), and monotonic queues for the minimum and maximum;
 * first and last are the window's two ends (at equal times, the least and the greatest
 * value, as the Spark frames order them). A window that holds no value gives null, and so
 * does stddev of one value. Cost: each event is added and removed once per window, each label
 * answered in time proportional to the number of outputs, whatever the windows' spans.
 */
public final class WindowSweep {
  private WindowSweep() {}

  static final int COUNT = 0, SUM = 1, MEAN = 2, MIN = 3, MAX = 4, STDDEV = 5, FIRST = 6, LAST = 7;
  private static final List<String> FUNCTIONS = List.of("count", "sum", "mean", "min", "max", "stddev", "first", "last");

  /**
   * The labels with one column per output: `inputs[i]` (an index among the events' value
   * columns, which follow their time), over `spans[i]` microseconds (-1: the whole history),
   * with `functions[i]`, named `names[i]`; count is a long, every other a double.
   */
  public static Dataset<Row> aggregate(Dataset<Row> labels, Dataset<Row> events, int keys,
                                       List<Integer> inputs, List<? extends Number> spans, List<String> functions,
                                       List<String> names) {
    int n = inputs.size();
    int[] input = new int[n];
    long[] span = new long[n];
    int[] function = new int[n];
    List<StructField> out = new ArrayList<>(List.of(labels.schema().fields()));
    for (int i = 0; i < n; i++) {
      input[i] = inputs.get(i);
      span[i] = spans.get(i).longValue();  // py4j passes a small long as an Integer
      function[i] = FUNCTIONS.indexOf(functions.get(i));
      if (function[i] < 0) throw new IllegalArgumentException("no sweep for function " + functions.get(i));
      out.add(DataTypes.createStructField(names.get(i), function[i] == COUNT ? DataTypes.LongType
          : DataTypes.DoubleType, true));
    }
    StructType schema = DataTypes.createStructType(out);
    SparkSession session = (SparkSession) ((org.apache.spark.sql.classic.Dataset<Row>) labels).sparkSession();
    RDD<InternalRow> left = AsOfMerge.rdd(labels);
    RDD<InternalRow> right = AsOfMerge.rdd(events);
    if (right.getNumPartitions() != left.getNumPartitions()) {
      if (right.isEmpty()) {
        right = AsOfMerge.empty(session, left.getNumPartitions());
      } else if (left.isEmpty()) {
        return session.internalCreateDataFrame(AsOfMerge.empty(session, 1), schema, false);
      } else {
        throw new IllegalArgumentException("the events have " + right.getNumPartitions()
            + " partitions, the labels " + left.getNumPartitions() + ": both must be partitioned alike");
      }
    }
    Sweep sweep = new Sweep(AsOfMerge.types(labels.schema()), keys, input, span, function);
    return session.internalCreateDataFrame(new AsOfMerge.Zipped(left, List.of(right), sweep), schema, false);
  }

  static final class Sweep implements AsOfMerge.Pass {
    private final DataType[] labelTypes;
    private final int keys;  // the key columns follow the order column; then `at`
    private final int[] input;
    private final long[] span;
    private final int[] function;
    private final int[] slotOf;  // output -> its (input, span) slot
    private final int[] slotInput;
    private final long[] slotSpan;

    Sweep(DataType[] labelTypes, int keys, int[] input, long[] span, int[] function) {
      this.labelTypes = labelTypes;
      this.keys = keys;
      this.input = input;
      this.span = span;
      this.function = function;
      List<long[]> slots = new ArrayList<>();
      slotOf = new int[input.length];
      for (int i = 0; i < input.length; i++) {
        int found = -1;
        for (int s = 0; s < slots.size(); s++) {
          if (slots.get(s)[0] == input[i] && slots.get(s)[1] == span[i]) found = s;
        }
        if (found < 0) {
          slots.add(new long[] {input[i], span[i]});
          found = slots.size() - 1;
        }
        slotOf[i] = found;
      }
      slotInput = new int[slots.size()];
      slotSpan = new long[slots.size()];
      for (int s = 0; s < slots.size(); s++) {
        slotInput[s] = (int) slots.get(s)[0];
        slotSpan[s] = slots.get(s)[1];
      }
    }

    @Override
    public Iterator<InternalRow> over(Iterator<InternalRow> labels, List<Iterator<InternalRow>> sides) {
      Iterator<InternalRow> events = sides.get(0);
      DataType[] keyTypes = java.util.Arrays.copyOfRange(labelTypes, 1, keys + 1);
      Comparator<InternalRow> byKeys = AsOfMerge.keyOrder(keyTypes);
      List<Expression> exprs = new ArrayList<>();
      for (int i = 0; i < labelTypes.length; i++) exprs.add(new BoundReference(i, labelTypes[i], true));
      for (int i = 0; i < input.length; i++) {
        exprs.add(new BoundReference(labelTypes.length + i,
            function[i] == COUNT ? DataTypes.LongType : DataTypes.DoubleType, true));
      }
      UnsafeProjection project = UnsafeProjection.create(CollectionConverters.asScala(exprs).toSeq());
      GenericInternalRow values = new GenericInternalRow(input.length);
      JoinedRow joined = new JoinedRow();
      Keys states = new Keys(byKeys);
      int at = keys + 1;
      return new Iterator<InternalRow>() {
        private InternalRow pending = events.hasNext() ? events.next() : null;

        @Override
        public boolean hasNext() {
          return labels.hasNext();
        }

        @Override
        public InternalRow next() {
          if (!labels.hasNext()) throw new NoSuchElementException();
          InternalRow label = labels.next();
          boolean untimed = label.isNullAt(at);
          long t = untimed ? 0 : label.getLong(at);
          while (pending != null && AsOfMerge.passed(pending, pending.getLong(at), label, untimed, t, byKeys)) {
            states.of(pending, true).add(pending, pending.getLong(at));
            pending = events.hasNext() ? events.next() : null;
          }
          State state = untimed ? null : states.of(label, false);
          if (state != null) state.dropUpTo(t);
          for (int i = 0; i < input.length; i++) {
            Slot slot = state == null ? null : state.slots[slotOf[i]];
            if (slot == null || slot.count() == 0) {
              values.setNullAt(i);
            } else if (function[i] == COUNT) {
              values.setLong(i, slot.count());
            } else {
              Double v = slot.value(function[i]);
              if (v == null) values.setNullAt(i); else values.setDouble(i, v);
            }
          }
          return project.apply(joined.apply(label, values));
        }
      };
    }

    /** The states of the keys whose hash (the order's upper 32 bits) is the current one: one
     * key, unless hashes collide. */
    private final class Keys {
      private final Comparator<InternalRow> byKeys;
      private final List<State> kept = new ArrayList<>();
      private int used;
      private long hash;

      Keys(Comparator<InternalRow> byKeys) {
        this.byKeys = byKeys;
      }

      State of(InternalRow keyed, boolean create) {
        long h = keyed.getLong(0) >> 32;
        if (h != hash || used == 0) {
          if (!create) return null;
          used = 0;
          hash = h;
        }
        for (int k = 0; k < used; k++) {
          if (byKeys.compare(kept.get(k).keyRow, keyed) == 0) return kept.get(k);
        }
        if (!create) return null;
        if (used == kept.size()) kept.add(new State());
        State s = kept.get(used++);
        s.reset(keyed);
        return s;
      }
    }

    /** One key's windows. */
    private final class State {
      InternalRow keyRow;
      final Slot[] slots = new Slot[slotInput.length];

      State() {
        for (int s = 0; s < slots.length; s++) slots[s] = new Slot(slotSpan[s]);
      }

      void reset(InternalRow keyed) {
        keyRow = keyed.copy();
        for (Slot s : slots) s.clear();
      }

      void add(InternalRow event, long when) {
        for (int s = 0; s < slots.length; s++) {
          int column = keys + 2 + slotInput[s];  // the values follow the order, keys and `at`
          if (!event.isNullAt(column)) slots[s].add(when, event.getDouble(column));
        }
      }

      void dropUpTo(long t) {
        for (Slot s : slots) s.dropUpTo(t);
      }
    }
  }

  /** One input's values over one window of one key: those visible in (t - span, t], or all
   * so far for the whole history (span < 0). */
  static final class Slot {
    private final long span;
    private long[] times = new long[16];
    private double[] values = new double[16];
    private long added;  // values ever added; the one at `head` is number added - size
    private int head, size;
    private double sum, mean, m2;
    private long n;
    // Monotonic queues of value numbers: minima increasing, maxima decreasing, front first.
    private final Numbers minima = new Numbers(), maxima = new Numbers();
    // The whole history's ends (the queue keeps no values then).
    private long firstAt, lastAt;
    private double first, last, least, greatest;

    Slot(long span) {
      this.span = span;
    }

    void clear() {
      added = 0;
      head = size = 0;
      n = 0;
      sum = mean = m2 = 0;
      minima.clear();
      maxima.clear();
    }

    long count() {
      return n;
    }

    void add(long at, double v) {
      n++;
      sum += v;
      double d = v - mean;
      mean += d / n;
      m2 += d * (v - mean);
      if (span < 0) {
        if (n == 1) {
          firstAt = lastAt = at;
          first = last = least = greatest = v;
          return;
        }
        if (at == firstAt && v < first) first = v;
        if (at > lastAt || v > last) last = v;
        lastAt = at;
        least = Math.min(least, v);
        greatest = Math.max(greatest, v);
        return;
      }
      if (size == times.length) grow();
      int tail = (head + size) % times.length;
      times[tail] = at;
      values[tail] = v;
      size++;
      long number = added++;
      while (!minima.empty() && valueOf(minima.back()) > v) minima.popBack();
      minima.push(number);
      while (!maxima.empty() && valueOf(maxima.back()) < v) maxima.popBack();
      maxima.push(number);
    }

    /** Drop the values visible at or before t - span (a finite window at t). */
    void dropUpTo(long t) {
      if (span < 0) return;
      long edge = t - span;
      while (size > 0 && times[head] <= edge) {
        double v = values[head];
        head = (head + 1) % times.length;
        size--;
        n--;
        if (n == 0) {  // empty: exact zeros again, so no rounding carries over
          sum = mean = m2 = 0;
        } else {
          sum -= v;
          double d = v - mean;
          mean -= d / n;
          m2 -= d * (v - mean);
        }
      }
      long oldest = added - size;
      while (!minima.empty() && minima.front() < oldest) minima.popFront();
      while (!maxima.empty() && maxima.front() < oldest) maxima.popFront();
    }

    private double valueOf(long number) {
      return values[(int) ((head + (number - (added - size))) % times.length)];
    }

    private void grow() {
      long[] t = new long[times.length * 2];
      double[] v = new double[times.length * 2];
      for (int i = 0; i < size; i++) {
        t[i] = times[(head + i) % times.length];
        v[i] = values[(head + i) % times.length];
      }
      times = t;
      values = v;
      head = 0;
    }

    Double value(int function) {
      switch (function) {
        case SUM:
          return sum;
        case MEAN:
          return sum / n;
        case STDDEV:
          return n < 2 ? null : Math.sqrt(Math.max(m2, 0) / (n - 1));
        case MIN:
          return span < 0 ? least : valueOf(minima.front());
        case MAX:
          return span < 0 ? greatest : valueOf(maxima.front());
        case FIRST: {
          if (span < 0) return first;
          double v = values[head];
          for (int i = 1; i < size && times[(head + i) % times.length] == times[head]; i++) {
            v = Math.min(v, values[(head + i) % times.length]);
          }
          return v;
        }
        case LAST: {
          if (span < 0) return last;
          int tail = (head + size - 1) % times.length;
          double v = values[tail];
          for (int i = size - 2; i >= 0 && times[(head + i) % times.length] == times[tail]; i--) {
            v = Math.max(v, values[(head + i) % times.length]);
          }
          return v;
        }
        default:
          throw new IllegalStateException("function " + function);
      }
    }
  }

  /** A double-ended queue of longs. */
  static final class Numbers {
    private long[] items = new long[16];
    private int head, size;

    boolean empty() {
      return size == 0;
    }

    void clear() {
      head = size = 0;
    }

    long front() {
      return items[head];
    }

    long back() {
      return items[(head + size - 1) % items.length];
    }

    void popFront() {
      head = (head + 1) % items.length;
      size--;
    }

    void popBack() {
      size--;
    }

    void push(long v) {
      if (size == items.length) {
        long[] grown = new long[items.length * 2];
        for (int i = 0; i < size; i++) grown[i] = items[(head + i) % items.length];
        items = grown;
        head = 0;
      }
      items[(head + size) % items.length] = v;
      size++;
    }
  }
}

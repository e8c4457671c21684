#!/usr/bin/python3
"""tests/tool/test_smooth.py: `ema smooth` against pandas.

For several flag combinations (each decay kind, --no-adjust, --ignore-na,
--min-periods, --times with dates, date-times and numbers), the column
NAME_ema that ema writes must equal pandas' Series.ewm(...).mean() on the
column pandas' read_csv reads (within 1e-12 relative, NaN where pandas has
NaN); the other columns must come back exactly as they were (RFC 4180
quoting both ways, checked with Python's csv module). The built-in data
(no --input) must match pandas too. Bad input must fail with a message that
names the line (ragged rows, non-numbers, unterminated quotes, decreasing
or malformed time stamps) and bad flags must be usage errors (exit 2).

Needs Debian's python3-pandas; skipped (77) without it.
"""
import csv
import io
import math
import xml.etree.ElementTree as ET

import toolcheck

pd = toolcheck.need("pandas")
np = toolcheck.need("numpy")

t = toolcheck.Context()

# A file with missing values of every spelling, quoted fields with commas,
# quotes and line breaks, CRLF line ends, dates with gaps, date-times and
# numeric time stamps.
rng = np.random.RandomState(5)
n = 60
values = 10 + np.cumsum(rng.normal(0, 1, n))
cells = ["%.6f" % v for v in values]
for i, na in [(0, ""), (3, "NaN"), (4, "nan"), (10, "NA"), (11, ""), (12, "null"), (25, "N/A"), (40, "inf"),
              (41, "-inf"), (59, "")]:
    cells[i] = na
days = np.cumsum(rng.randint(0, 4, n))  # gaps and repeats
dates = [str(np.datetime64("2024-01-30") + int(d)) for d in days]
datetimes = [str(np.datetime64("2024-03-01T00:00:00") + int(h) * np.timedelta64(90, "m")).replace("T", sep)
             for h, sep in zip(np.cumsum(rng.randint(0, 5, n)), ["T", " "] * (n // 2))]
seconds = ["%.3f" % s for s in np.cumsum(rng.uniform(0, 3, n))]
notes = ['plain', 'with, comma', 'with "quotes"', 'two\nlines', ' padded ', ''] * (n // 6)
rows = [["date", "when", "secs", "value", "note"]]
rows += [[dates[i], datetimes[i], seconds[i], cells[i], notes[i]] for i in range(n)]
buf = io.StringIO()
csv.writer(buf, lineterminator="\r\n").writerows(rows)
data_csv = t.path("data.csv")
with open(data_csv, "w", newline="") as f:
    f.write(buf.getvalue())

frame = pd.read_csv(data_csv)


def compare(args, pandas_kwargs, times_col=None, halflife=None, what=None):
    what = what or " ".join(args)
    out = t.path("out.csv")
    p = t.run("smooth", "--input", data_csv, "--column", "value", "--output", out, *args)
    if not t.expect(p, 0, what):
        return
    got = pd.read_csv(out)
    kw = dict(pandas_kwargs)
    if times_col:
        kw["times"] = pd.to_datetime(frame[times_col]) if times_col != "secs" else \
            pd.to_datetime(frame[times_col], unit="s")
        kw["halflife"] = pd.Timedelta(halflife)
    want = frame["value"].ewm(**kw).mean().to_numpy()
    have = got["value_ema"].to_numpy(dtype=float)
    same_nan = np.array_equal(np.isnan(want), np.isnan(have))
    t.check(same_nan, "%s: NaN where pandas has NaN" % what, "%s\n%s" % (want, have))
    ok = np.isnan(want) | (np.abs(have - want) <= 1e-12 * np.maximum(1.0, np.abs(want)))
    t.check(bool(ok.all()), "%s: equals pandas ewm(%s).mean()" % (what, kw),
            "max abs diff %g" % np.nanmax(np.abs(have - want)) if same_nan else "")
    # the input columns are kept, cell for cell (RFC 4180 round trip)
    with open(out, newline="") as f:
        back = list(csv.reader(f))
    t.check([r[:-1] for r in back] == rows, "%s: input columns unchanged" % what)
    t.check(back[0][-1] == "value_ema", "%s: new column named value_ema" % what, back[0])


compare(["--beta", "0.9"], {"alpha": 1 - 0.9})
compare(["--alpha", "0.3", "--no-adjust"], {"alpha": 0.3, "adjust": False})
compare(["--span", "10", "--ignore-na"], {"span": 10, "ignore_na": True})
compare(["--com", "4", "--min-periods", "5"], {"com": 4, "min_periods": 5})
compare(["--halflife", "5", "--no-adjust", "--ignore-na"], {"halflife": 5, "adjust": False, "ignore_na": True})
compare(["--alpha", "1"], {"alpha": 1.0})
compare(["--times", "date", "--halflife", "3d"], {}, "date", "3d")
compare(["--times", "date", "--halflife", "2 days", "--ignore-na", "--min-periods", "2"],
        {"ignore_na": True, "min_periods": 2}, "date", "2d")
compare(["--times", "when", "--halflife", "12h"], {}, "when", "12h")
compare(["--times", "when", "--halflife", "5400"], {}, "when", "5400s")
compare(["--times", "secs", "--halflife", "2.5"], {}, "secs", "2.5s")

# standard input and standard output
with open(data_csv) as f:
    text = f.read()
p = t.run("smooth", "--input", "-", "--column", "value", "--beta", "0.5", stdin=text)
if t.expect(p, 0, "stdin to stdout"):
    got = pd.read_csv(io.StringIO(p.stdout))
    want = frame["value"].ewm(alpha=0.5).mean()
    t.check(np.allclose(got["value_ema"], want, rtol=1e-12, equal_nan=True), "stdin: equals pandas")

# the built-in year
p = t.run("smooth")
if t.expect(p, 0, "built-in data, default beta 0.9"):
    got = pd.read_csv(io.StringIO(p.stdout))
    t.check(list(got.columns) == ["date", "day", "temperature", "temperature_ema"], "built-in columns",
            list(got.columns))
    t.check(len(got) == 365, "a year of days", len(got))
    t.check(got["date"].iloc[0] == "2023-01-01" and got["date"].iloc[-1] == "2023-12-31", "dates of 2023")
    want = got["temperature"].ewm(alpha=0.1).mean()
    t.check(np.allclose(got["temperature_ema"], want, rtol=1e-12), "built-in: equals pandas alpha=0.1")
    t.check(got["temperature"].mean() > 5 and got["temperature"].mean() < 17, "plausible temperatures")
p = t.run("smooth", "--times", "date", "--halflife", "7d")
if t.expect(p, 0, "built-in data with --times date"):
    got = pd.read_csv(io.StringIO(p.stdout))
    want = got["temperature"].ewm(halflife=pd.Timedelta("7d"), times=pd.to_datetime(got["date"])).mean()
    t.check(np.allclose(got["temperature_ema"], want, rtol=1e-12), "built-in with times: equals pandas")

svg = t.path("seeds.svg")
p = t.run("smooth", "--plot", svg, "--output", t.path("builtin.csv"))
if t.expect(p, 0, "built-in plot"):
    root = ET.parse(svg).getroot()
    texts = " ".join(e.text or "" for e in root.iter() if e.tag.endswith("text"))
    for s in ["β = 0.5", "β = 0.9", "β = 0.98", "Without bias correction", "With bias correction"]:
        t.check(s in texts, "seeds' figure has %r" % s, texts[:400])
    paths = [e for e in root.iter() if e.tag.endswith("path")]
    t.check(len(paths) == 6, "three curves in each of the two panels", len(paths))
svg2 = t.path("input.svg")
p = t.run("smooth", "--input", data_csv, "--column", "value", "--times", "date", "--halflife", "3d",
          "--plot", svg2, "--output", t.path("o.csv"))
if t.expect(p, 0, "plot of an input file"):
    ET.parse(svg2)

# the output column exists already
with open(t.path("has_ema.csv"), "w") as f:
    f.write("x,x_ema\n1,2\n")
p = t.run("smooth", "-i", t.path("has_ema.csv"), "-c", "x", "--beta", "0.5")
t.expect_failure(p, "output column exists", "'x_ema' exists already")

# malformed CSV: the message names the file and the line
bad = {
    "ragged.csv": ("a,b\n1,2\n3,4\n5\n6,7\n", "ragged.csv:4:", "1 field, but the header has 2"),
    "ragged_more.csv": ("a,b\n1,2\n3,4,5\n", "ragged_more.csv:3:", "3 fields"),
    "word.csv": ("a,b\n1,2\n3,abc\n", "word.csv:3:", "'abc' is not a number"),
    "hex.csv": ("a,b\n1,0x10\n", "hex.csv:2:", "not a number"),
    "unterminated.csv": ('a,b\n1,2\n3,"open\n4,5\n', "unterminated.csv:3:", "never closed"),
    "after_quote.csv": ('a,b\n1,"2"x\n', "after_quote.csv:2:", "after a closing quote"),
    "multiline.csv": ('a,b\n"x\ny",1\n"z",oops\n', "multiline.csv:4:", "'oops' is not a number"),
    "empty.csv": ("", "empty.csv:", "empty file"),
    "bad_date.csv": ("t,b\n2024-01-01,1\n2024-02-30,2\n", "bad_date.csv:3:", "not a time stamp"),
    "back_in_time.csv": ("t,b\n2024-01-02,1\n2024-01-01,2\n", "back_in_time.csv:3:", "must not decrease"),
    "mixed_times.csv": ("t,b\n2024-01-02,1\n5,2\n", "mixed_times.csv:3:", "mixes a number"),
    "empty_time.csv": ("t,b\n2024-01-02,1\n,2\n", "empty_time.csv:3:", "not a time stamp"),
}
for name, (content, where, what) in bad.items():
    path = t.path(name)
    with open(path, "w", newline="") as f:
        f.write(content)
    args = ["--times", "t", "--halflife", "1d"] if content.startswith("t,") else ["--beta", "0.5"]
    p = t.run("smooth", "--input", path, "--column", "b", *args)
    t.expect_failure(p, "malformed " + name, where, what)

p = t.run("smooth", "--input", data_csv, "--column", "nope", "--beta", "0.5")
t.expect_failure(p, "missing column", "no column 'nope'", "'value'")
p = t.run("smooth", "--input", data_csv, "--column", "value", "--times", "nope", "--halflife", "1d")
t.expect_failure(p, "missing times column", "no column 'nope' for --times")
p = t.run("smooth", "--input", t.path("no-such.csv"), "--column", "x", "--beta", "0.5")
t.expect_failure(p, "missing file", "cannot open", "no-such.csv")

# usage errors
usage = [
    (["--input", data_csv, "--column", "value"], "missing the decay"),
    (["--input", data_csv, "--beta", "0.5"], "missing --column"),
    (["--input", data_csv, "--column", "value", "--beta", "0.5", "--alpha", "0.5"], "only one of"),
    (["--input", data_csv, "--column", "value", "--beta", "1"], "--beta"),
    (["--input", data_csv, "--column", "value", "--alpha", "1.5"], "--alpha"),
    (["--input", data_csv, "--column", "value", "--span", "0.5"], "--span"),
    (["--input", data_csv, "--column", "value", "--com", "-1"], "--com"),
    (["--input", data_csv, "--column", "value", "--halflife", "0"], "--halflife"),
    (["--input", data_csv, "--column", "value", "--beta", "abc"], "needs a number"),
    (["--input", data_csv, "--column", "value", "--beta", "0.5", "--times", "date"], "--halflife"),
    (["--input", data_csv, "--column", "value", "--halflife", "3d"], "needs a number"),
    (["--input", data_csv, "--column", "value", "--halflife", "3 fortnights", "--times", "date"], "duration"),
    (["--input", data_csv, "--column", "value", "--halflife", "1d", "--times", "date", "--no-adjust"], "adjust"),
    (["--input", data_csv, "--column", "value", "--beta", "0.5", "--min-periods", "-1"], "--min-periods"),
    (["data.csv"], "unexpected argument"),
]
for args, needle in usage:
    p = t.run("smooth", *args)
    t.expect_usage(p, "smooth", "usage: " + " ".join(args[2:] if args[0] == "--input" else args), needle)

t.done()

#!/usr/bin/python3
"""tests/tool/test_svg_render.py: the tool's SVG plots render in a browser.

Each plot the tool writes (the demo's curves, the seeds' temperature figures,
a plot of an input file, and one whose labels are full of XML specials) must
be well-formed XML and, rendered by headless Chromium to PNG, show its data:
the PNG is decoded here (a small reader for 8-bit RGB/RGBA PNGs, zlib from
the standard library) and every curve colour of the plot must cover a fair
number of pixels, with many distinct colours overall (text, grid, curves).

Skipped (77) when chromium is not installed. Set EMA_KEEP_PNG=DIR to keep the
rendered PNGs for a look.
"""
import os
import shutil
import struct
import subprocess
import tempfile
import xml.etree.ElementTree as ET
import zlib

import toolcheck

t = toolcheck.Context()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or \
    (os.path.exists("/usr/bin/chromium") and "/usr/bin/chromium")
if not CHROMIUM:
    print("SKIP: chromium not installed")
    raise SystemExit(toolcheck.SKIP)


def read_png(path):
    """(width, height, rows of (r, g, b) tuples) of an 8-bit RGB or RGBA PNG."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    w, h, depth, ctype, _, _, interlace = hdr
    if depth != 8 or ctype not in (2, 6) or interlace:
        raise ValueError("unsupported PNG (depth %d, colour type %d, interlace %d)" % (depth, ctype, interlace))
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(h):
        ftype, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):  # undo the filter (PNG spec, section 9)
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if ftype == 1:
                line[x] = (line[x] + a) & 255
            elif ftype == 2:
                line[x] = (line[x] + b) & 255
            elif ftype == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x:x + 3]) for x in range(0, stride, bpp)])
        prev = line
    return w, h, rows


def render(svg, png):
    root = ET.parse(svg).getroot()
    w, h = int(float(root.get("width"))), int(float(root.get("height")))
    profile = tempfile.mkdtemp(prefix="chromium-", dir=t.tmp)
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
           "--user-data-dir=" + profile, "--screenshot=" + png, "--window-size=%d,%d" % (w, h),
           "file://" + os.path.abspath(svg)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return p.returncode == 0 and os.path.exists(png), p.stderr[-1500:], (w, h)


def hexrgb(s):
    return tuple(int(s[i:i + 2], 16) for i in (1, 3, 5))


def check_plot(svg, colours, what, min_pixels=150):
    try:
        root = ET.parse(svg).getroot()
    except ET.ParseError as e:
        t.check(False, "%s: well-formed XML" % what, e)
        return
    png = svg[:-4] + ".png"
    ok, err, size = render(svg, png)
    if not t.check(ok, "%s: chromium renders it" % what, err):
        return
    w, h, rows = read_png(png)
    t.check((w, h) == size, "%s: PNG of the SVG's size" % what, ((w, h), size))
    counts = {}
    for row in rows:
        for px in row:
            counts[px] = counts.get(px, 0) + 1
    white = counts.get((255, 255, 255), 0)
    t.check(white < 0.97 * w * h, "%s: not a blank page (%d%% white)" % (what, 100 * white // (w * h)))
    t.check(len(counts) > 30, "%s: many distinct colours (%d)" % (what, len(counts)))
    for c in colours:
        # anti-aliasing blends edges; the core of a 2 px curve keeps its colour (within 8 per channel)
        rgb = hexrgb(c)
        n = sum(v for px, v in counts.items() if max(abs(px[k] - rgb[k]) for k in range(3)) <= 8)
        t.check(n >= min_pixels, "%s: colour %s covers %d pixels (>= %d)" % (what, c, n, min_pixels))
    keep = os.environ.get("EMA_KEEP_PNG")
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(png, os.path.join(keep, os.path.basename(png)))


BLUE, ORANGE, RED, GREEN, PURPLE, SKY = "#0072b2", "#e69f00", "#d55e00", "#009e73", "#a24ea8", "#56b4e9"

p = t.run("demo", "--epochs", "8", "--out", t.path("demo"))
if t.expect(p, 0, "demo"):
    check_plot(t.path("demo", "demo.svg"), [BLUE, RED], "demo plot")

svg = t.path("seeds.svg")
p = t.run("smooth", "--plot", svg, "--output", t.path("seeds.csv"))
if t.expect(p, 0, "smooth built-in plot"):
    check_plot(svg, [SKY, ORANGE, RED, GREEN, PURPLE], "seeds' figures")

# an input file whose column name is full of XML specials
with open(t.path("odd.csv"), "w") as f:
    f.write('day,"<&> ""x"" \'y\'"\n')
    for i in range(200):
        f.write("%d,%s\n" % (i, "" if i % 17 == 0 else "%.3f" % ((i % 23) * 0.5 + i * 0.05)))
svg = t.path("odd.svg")
p = t.run("smooth", "--input", t.path("odd.csv"), "--column", "<&> \"x\" 'y'", "--span", "12", "--plot", svg,
          "--output", t.path("odd_out.csv"))
if t.expect(p, 0, "smooth plot with XML specials in the labels"):
    check_plot(svg, [SKY, RED], "plot with escaped labels")
    texts = [e.text for e in ET.parse(svg).getroot().iter() if e.tag.endswith("text")]
    t.check(any("<&> \"x\" 'y'" in (s or "") for s in texts), "the label survives escaping", texts[:5])

t.done()

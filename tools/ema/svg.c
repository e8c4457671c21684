/*
 * svg.c: the SVG plot writer (see svg.h).
 *
 * Layout of one panel (pixels): the plot area is inset by fixed margins
 * (room for tick labels on the left, the x label below, the title above).
 * Axis ranges come from the data, padded by 4% and then widened to whole
 * tick steps so that the frame starts and ends on a tick. A tick step is
 * 1, 2 or 5 times a power of ten, chosen to give about five to eight ticks.
 */
#include "svg.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

enum { MARGIN_LEFT = 72, MARGIN_RIGHT = 24, MARGIN_TOP = 44, MARGIN_BOTTOM = 56, FIG_TITLE_H = 36 };

typedef struct axis {
  double lo, hi, step; /* the frame's range and the tick step */
} axis;

/* A tick step of 1, 2 or 5 times a power of ten near span/target. */
static double nice_step(double span, double target) {
  double raw = span / target;
  double mag = pow(10.0, floor(log10(raw)));
  double norm = raw / mag;
  double nice = norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10;
  return nice * mag;
}

/* Frame range and step for data in [lo, hi]. With widen, the range is padded
   by 4% and extended to whole steps (y axes); otherwise it is the data's
   range and the ticks fall inside it (x axes). */
static axis make_axis(double lo, double hi, int integer, int widen) {
  axis a;
  if (!(lo <= hi)) { /* no data at all */
    lo = 0;
    hi = 1;
  }
  if (hi - lo < 1e-12 * (fabs(lo) + fabs(hi)) || hi == lo) {
    double pad = lo == 0 ? 1 : fabs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  } else if (widen) {
    double pad = 0.04 * (hi - lo);
    lo = lo >= 0 && lo - pad < 0 ? 0 : lo - pad; /* data that are >= 0 keep a zero baseline */
    hi += pad;
  }
  a.step = nice_step(hi - lo, widen ? 6 : 7);
  if (integer && a.step < 1) a.step = 1;
  if (!widen) { /* 1% inside so that edge points are not cut by the frame */
    a.lo = lo - 0.01 * (hi - lo);
    a.hi = hi + 0.01 * (hi - lo);
    return a;
  }
  a.lo = floor(lo / a.step) * a.step;
  a.hi = ceil(hi / a.step) * a.step;
  /* too many ticks after widening: take the next step up */
  if ((a.hi - a.lo) / a.step > 9) {
    a.step = nice_step(hi - lo, 4);
    a.lo = floor(lo / a.step) * a.step;
    a.hi = ceil(hi / a.step) * a.step;
  }
  return a;
}

/* Tick label text: as many decimals as the step needs, %g for extremes. */
static void tick_text(char *buf, size_t cap, double v, double step) {
  if (fabs(v) < step * 1e-9) v = 0; /* no "-0" or 1e-17 */
  double mag = fabs(v) > step ? fabs(v) : step;
  if (mag >= 1e6 || step < 1e-4) {
    snprintf(buf, cap, "%.3g", v);
    return;
  }
  int decimals = (int)ceil(-log10(step) - 1e-9);
  if (decimals < 0) decimals = 0;
  snprintf(buf, cap, "%.*f", decimals, v);
}

static void xml_text(FILE *f, const char *s) {
  for (; s && *s; s++) {
    switch (*s) {
      case '&':
        fputs("&amp;", f);
        break;
      case '<':
        fputs("&lt;", f);
        break;
      case '>':
        fputs("&gt;", f);
        break;
      case '"':
        fputs("&quot;", f);
        break;
      case '\'':
        fputs("&apos;", f);
        break;
      default:
        /* control characters are not allowed in XML 1.0 */
        if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n')
          fputc(' ', f);
        else
          fputc(*s, f);
    }
  }
}

typedef struct frame {
  double x0, y0, w, h; /* plot area in pixels */
  axis ax, ay;
} frame;

static double px(const frame *fr, double x) { return fr->x0 + (x - fr->ax.lo) / (fr->ax.hi - fr->ax.lo) * fr->w; }
static double py(const frame *fr, double y) { return fr->y0 + (1 - (y - fr->ay.lo) / (fr->ay.hi - fr->ay.lo)) * fr->h; }

static size_t legend_entries(const svg_panel *p) {
  size_t n = 0;
  for (size_t s = 0; s < p->n_series; s++) n += p->series[s].label != NULL;
  return n;
}

/* Legend box size: rough text width of 7 px per character at 12 px. */
static void legend_size(const svg_panel *p, double *w, double *h) {
  size_t longest = 0;
  for (size_t s = 0; s < p->n_series; s++)
    if (p->series[s].label && strlen(p->series[s].label) > longest) longest = strlen(p->series[s].label);
  *w = 44 + 6.8 * (double)longest;
  *h = 10 + 18 * (double)legend_entries(p);
}

/* Number of data points (and points along each segment) inside the box. */
static size_t crowding(const svg_panel *p, const frame *fr, double bx, double by, double bw, double bh) {
  size_t hits = 0;
  for (size_t s = 0; s < p->n_series; s++) {
    const svg_series *se = &p->series[s];
    for (size_t i = 0; i < se->n; i++) {
      if (!isfinite(se->x[i]) || !isfinite(se->y[i])) continue;
      double X = px(fr, se->x[i]), Y = py(fr, se->y[i]);
      int steps = 1;
      double X1 = X, Y1 = Y;
      if (se->style != SVG_DOTS && i + 1 < se->n && isfinite(se->x[i + 1]) && isfinite(se->y[i + 1])) {
        X1 = px(fr, se->x[i + 1]);
        Y1 = py(fr, se->y[i + 1]);
        steps = 1 + (int)(hypot(X1 - X, Y1 - Y) / 4); /* a sample every 4 px */
        if (steps > 200) steps = 200;
      }
      for (int k = 0; k < steps; k++) {
        double t = (double)k / steps, x = X + t * (X1 - X), y = Y + t * (Y1 - Y);
        if (x >= bx - 4 && x <= bx + bw + 4 && y >= by - 4 && y <= by + bh + 4) hits++;
      }
    }
  }
  return hits;
}

static void data_range(const svg_panel *p, int want_y, double *lo, double *hi) {
  *lo = INFINITY;
  *hi = -INFINITY;
  for (size_t s = 0; s < p->n_series; s++)
    for (size_t i = 0; i < p->series[s].n; i++) {
      double v = want_y ? p->series[s].y[i] : p->series[s].x[i];
      if (!isfinite(p->series[s].x[i]) || !isfinite(p->series[s].y[i])) continue;
      if (v < *lo) *lo = v;
      if (v > *hi) *hi = v;
    }
}

static void draw_series(FILE *f, const frame *fr, const svg_series *se) {
  const char *color = se->color ? se->color : "#000000";
  if (se->style == SVG_DOTS) {
    double r = se->width > 0 ? se->width : 2.0;
    fprintf(f, "<g fill=\"%s\" stroke=\"none\">\n", color);
    for (size_t i = 0; i < se->n; i++) {
      if (!isfinite(se->x[i]) || !isfinite(se->y[i])) continue;
      fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"%.2f\"/>\n", px(fr, se->x[i]), py(fr, se->y[i]), r);
    }
    fputs("</g>\n", f);
    return;
  }
  double w = se->width > 0 ? se->width : 2.0;
  fprintf(f, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"%.2f\" stroke-linejoin=\"round\"%s d=\"", color, w,
          se->style == SVG_DASHED ? " stroke-dasharray=\"7 4\"" : "");
  int pen_down = 0, col = 0;
  for (size_t i = 0; i < se->n; i++) {
    if (!isfinite(se->x[i]) || !isfinite(se->y[i])) {
      pen_down = 0;
      continue;
    }
    fprintf(f, "%s%.2f %.2f", pen_down ? " L" : (i ? " M" : "M"), px(fr, se->x[i]), py(fr, se->y[i]));
    pen_down = 1;
    if (++col % 8 == 0) fputc('\n', f);
  }
  fputs("\"/>\n", f);
}

static void draw_panel(FILE *f, const svg_panel *p, double left, double top, double width, double height, int id) {
  frame fr;
  fr.x0 = left + MARGIN_LEFT;
  fr.y0 = top + MARGIN_TOP;
  fr.w = width - MARGIN_LEFT - MARGIN_RIGHT;
  fr.h = height - MARGIN_TOP - MARGIN_BOTTOM;
  double xlo, xhi, ylo, yhi;
  data_range(p, 0, &xlo, &xhi);
  data_range(p, 1, &ylo, &yhi);
  fr.ax = make_axis(xlo, xhi, p->x_integer, 0);
  fr.ay = make_axis(ylo, yhi, 0, 1);

  /* legend: the emptiest corner; if all are crowded, add headroom on top */
  double lw = 0, lh = 0, lx = 0, ly = 0;
  size_t nleg = legend_entries(p);
  if (nleg) {
    legend_size(p, &lw, &lh);
    for (int attempt = 0; attempt < 4; attempt++) {
      double cx[4] = {fr.x0 + fr.w - lw - 10, fr.x0 + 10, fr.x0 + fr.w - lw - 10, fr.x0 + 10};
      double cy[4] = {fr.y0 + 10, fr.y0 + 10, fr.y0 + fr.h - lh - 10, fr.y0 + fr.h - lh - 10};
      size_t best = (size_t)-1;
      for (int c = 0; c < 4; c++) {
        size_t hits = crowding(p, &fr, cx[c], cy[c], lw, lh);
        if (hits < best) {
          best = hits;
          lx = cx[c];
          ly = cy[c];
        }
      }
      if (best == 0) break;
      /* widen the y range upwards by the legend's height, then retry */
      double per_px = (fr.ay.hi - fr.ay.lo) / fr.h;
      fr.ay = make_axis(ylo, yhi + (lh + 24) * per_px * (1 + 0.5 * attempt), 0, 1);
    }
  }

  /* grid and ticks */
  fprintf(f, "<g font-family=\"DejaVu Sans, Arial, Helvetica, sans-serif\" font-size=\"12\" fill=\"#333333\">\n");
  char buf[64];
  double first = ceil(fr.ax.lo / fr.ax.step - 1e-9) * fr.ax.step;
  for (int k = 0;; k++) {
    double v = first + k * fr.ax.step;
    if (v > fr.ax.hi + fr.ax.step * 1e-9) break;
    double X = px(&fr, v);
    fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#e3e3e3\" stroke-width=\"1\"/>\n", X,
            fr.y0, X, fr.y0 + fr.h);
    fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#333333\" stroke-width=\"1\"/>\n", X,
            fr.y0 + fr.h, X, fr.y0 + fr.h + 5);
    tick_text(buf, sizeof buf, v, fr.ax.step);
    fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">%s</text>\n", X, fr.y0 + fr.h + 19, buf);
  }
  for (int k = 0;; k++) {
    double v = fr.ay.lo + k * fr.ay.step;
    if (v > fr.ay.hi + fr.ay.step * 1e-9) break;
    double Y = py(&fr, v);
    fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#e3e3e3\" stroke-width=\"1\"/>\n", fr.x0,
            Y, fr.x0 + fr.w, Y);
    fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#333333\" stroke-width=\"1\"/>\n",
            fr.x0 - 5, Y, fr.x0, Y);
    tick_text(buf, sizeof buf, v, fr.ay.step);
    fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\">%s</text>\n", fr.x0 - 8, Y + 4, buf);
  }
  fputs("</g>\n", f);

  /* data, clipped to the plot area */
  fprintf(f, "<clipPath id=\"clip%d\"><rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\"/></clipPath>\n", id,
          fr.x0, fr.y0, fr.w, fr.h);
  fprintf(f, "<g clip-path=\"url(#clip%d)\">\n", id);
  for (size_t s = 0; s < p->n_series; s++) draw_series(f, &fr, &p->series[s]);
  fputs("</g>\n", f);
  fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" stroke=\"#333333\"/>\n", fr.x0,
          fr.y0, fr.w, fr.h);

  /* title and axis labels */
  fprintf(f, "<g font-family=\"DejaVu Sans, Arial, Helvetica, sans-serif\" fill=\"#111111\">\n");
  if (p->title) {
    fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" font-size=\"15\" font-weight=\"bold\" text-anchor=\"middle\">",
            fr.x0 + fr.w / 2, top + 26);
    xml_text(f, p->title);
    fputs("</text>\n", f);
  }
  if (p->xlabel) {
    fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" font-size=\"13\" text-anchor=\"middle\">", fr.x0 + fr.w / 2,
            top + height - 14);
    xml_text(f, p->xlabel);
    fputs("</text>\n", f);
  }
  if (p->ylabel) {
    double X = left + 18, Y = fr.y0 + fr.h / 2;
    fprintf(f,
            "<text x=\"%.2f\" y=\"%.2f\" font-size=\"13\" text-anchor=\"middle\" transform=\"rotate(-90 %.2f %.2f)\">",
            X, Y, X, Y);
    xml_text(f, p->ylabel);
    fputs("</text>\n", f);
  }
  fputs("</g>\n", f);

  /* legend */
  if (nleg) {
    fprintf(f,
            "<g font-family=\"DejaVu Sans, Arial, Helvetica, sans-serif\" font-size=\"12\">\n"
            "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" rx=\"3\" fill=\"#ffffff\" "
            "fill-opacity=\"0.9\" stroke=\"#999999\"/>\n",
            lx, ly, lw, lh);
    double Y = ly + 5 + 9;
    for (size_t s = 0; s < p->n_series; s++) {
      const svg_series *se = &p->series[s];
      if (!se->label) continue;
      const char *color = se->color ? se->color : "#000000";
      if (se->style == SVG_DOTS)
        fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"%s\"/>\n", lx + 20, Y, color);
      else
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" stroke-width=\"%.1f\"%s/>\n",
                lx + 8, Y, lx + 32, Y, color, se->width > 0 ? se->width : 2.0,
                se->style == SVG_DASHED ? " stroke-dasharray=\"7 4\"" : "");
      fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" fill=\"#111111\">", lx + 38, Y + 4);
      xml_text(f, se->label);
      fputs("</text>\n", f);
      Y += 18;
    }
    fputs("</g>\n", f);
  }
}

int svg_write(const char *path, const char *title, const svg_panel *panels, size_t n_panels, int panel_width,
              int height, char *err, size_t errcap) {
  FILE *f = fopen(path, "w");
  if (!f) {
    snprintf(err, errcap, "cannot create '%s': %s", path, strerror(errno));
    return 0;
  }
  double W = (double)panel_width * (double)n_panels, H = height;
  double top = title ? FIG_TITLE_H : 0;
  fprintf(f,
          "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
          "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" height=\"%.0f\" "
          "viewBox=\"0 0 %.0f %.0f\">\n",
          W, H, W, H);
  fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>\n", W, H);
  if (title) {
    fprintf(f,
            "<text x=\"%.2f\" y=\"26\" font-family=\"DejaVu Sans, Arial, Helvetica, sans-serif\" font-size=\"17\" "
            "font-weight=\"bold\" text-anchor=\"middle\" fill=\"#111111\">",
            W / 2);
    xml_text(f, title);
    fputs("</text>\n", f);
  }
  for (size_t i = 0; i < n_panels; i++)
    draw_panel(f, &panels[i], (double)i * panel_width, top, panel_width, H - top, (int)i);
  fputs("</svg>\n", f);
  int bad = ferror(f);
  if (fclose(f) != 0 || bad) {
    snprintf(err, errcap, "cannot write '%s': %s", path, strerror(errno));
    return 0;
  }
  return 1;
}

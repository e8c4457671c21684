/*
 * svg.h: line and dot plots written straight to SVG, no plotting library.
 *
 * A figure is a row of panels side by side under an optional title. Each
 * panel has its own axes with "nice" round ticks (1, 2 or 5 times a power of
 * ten), a light grid, a framed plot area, a title, axis labels and a legend
 * placed in the corner where it covers the fewest data points (the y range
 * grows to make room when every corner is crowded). Text is XML-escaped, so
 * any label is safe. NaN values break a line and are skipped as dots.
 *
 * The output is plain SVG 1.1 that browsers render as is; the tool's tests
 * render every plot with headless Chromium and check the pixels.
 */
#ifndef EMA_TOOL_SVG_H
#define EMA_TOOL_SVG_H

#include <stddef.h>

typedef enum svg_style {
  SVG_LINE = 0,   /* solid polyline */
  SVG_DASHED = 1, /* dashed polyline */
  SVG_DOTS = 2    /* one small disc per point */
} svg_style;

typedef struct svg_series {
  const char *label;   /* legend text; NULL: not in the legend */
  const double *x, *y; /* n points each (borrowed) */
  size_t n;
  const char *color; /* "#rrggbb" */
  svg_style style;
  double width; /* stroke width or dot radius in pixels; 0: default */
} svg_series;

typedef struct svg_panel {
  const char *title, *xlabel, *ylabel;
  const svg_series *series; /* borrowed, n_series entries */
  size_t n_series;
  int x_integer; /* 1: x ticks only at whole numbers (epochs, days) */
} svg_panel;

/* Write the figure to path. panel_width and height are in pixels (the SVG's
   size is n_panels * panel_width by height). Returns 1, or 0 with one
   sentence in err when the file cannot be written. */
int svg_write(const char *path, const char *title, const svg_panel *panels, size_t n_panels, int panel_width,
              int height, char *err, size_t errcap);

/* Palette shared by the plots (colour-blind friendly, Okabe-Ito based). */
#define SVG_BLUE "#0072b2"
#define SVG_ORANGE "#e69f00"
#define SVG_RED "#d55e00"
#define SVG_GREEN "#009e73"
#define SVG_PURPLE "#a24ea8"
#define SVG_GREY "#8c8c8c"
#define SVG_SKY "#56b4e9"

#endif /* EMA_TOOL_SVG_H */

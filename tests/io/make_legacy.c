/* Wrote tests/io/data/legacy_{plain,debias}.st with the 0.1 library. */
#include <stdio.h>
#include "legacy_model.h"
int main(int argc, char **argv) {
  if (argc != 3) return 2;
  for (int d = 0; d < 2; d++) {
    legacy_model m;
    ema_ctx *ctx = legacy_build(&m, d, 5);
    if (!ctx || ema_save(ctx, argv[1 + d]) != EMA_OK) {
      fprintf(stderr, "fail %s\n", ctx ? ema_last_error(ctx) : "");
      return 1;
    }
    ema_free(ctx);
  }
  return 0;
}

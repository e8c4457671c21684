// The public header must compile and link from C++ (extern "C", no C-only syntax).
#include <ema/ema.h>

#include <cstdio>

int main() {
  ema_ctx *ctx = nullptr;
  if (ema_create(&ctx, 0.99) != EMA_OK) return 1;
  float w = 1.0f;
  int rc = ema_track(ctx, "w", &w, EMA_F32, 0, nullptr) == EMA_OK && ema_apply(ctx) == EMA_OK ? 0 : 1;
  ema_free(ctx);
  std::printf("test_header_cxx: %d passed, %d failed\n", 1 - rc, rc);
  return rc;
}

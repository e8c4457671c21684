/* The declarations of this module are public: they live in include/ema/ema.h. */
#ifndef EMA_SERIES_SERIES_H
#define EMA_SERIES_SERIES_H

#include "ema/series.h"

#endif

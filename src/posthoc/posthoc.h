/* The declarations of this module are public: they live in include/ema/ema.h. */
#ifndef EMA_POSTHOC_POSTHOC_H
#define EMA_POSTHOC_POSTHOC_H

#include "ema/posthoc.h"

#endif

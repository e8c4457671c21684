/*
 * libema: exponential moving averages of deep-learning model weights.
 *
 * The umbrella header: it includes every public header of the core library,
 * so a program written against the v0 contract compiles unchanged.
 *
 *   ema/core.h     context, tensors and policies, decays and schedules,
 *                  apply/update, the bank, evaluation, checkpoints, threads
 *   ema/file.h     safetensors files: read, write, stream, extract
 *   ema/posthoc.h  power-function EMA math and post-hoc synthesis (experimental)
 *   ema/series.h   EMA of data series, pandas ewm semantics (experimental)
 *
 * The sharded and MPI headers (ema/dist.h, ema/mpi.h) are included on their own.
 */
#ifndef EMA_EMA_H
#define EMA_EMA_H

#include "ema/core.h"
#include "ema/file.h"
#include "ema/posthoc.h"
#include "ema/series.h"

#endif /* EMA_EMA_H */

/*
 * src/dist/shardfile.h: writing one rank's shard file. Private to src/dist.
 */
#ifndef EMA_DIST_SHARDFILE_H
#define EMA_DIST_SHARDFILE_H

#include "dist/dist.h"
#include "dist/json.h"

/* Write dir/name atomically with the n entries e[i] (their local boxes) and
   the metadata described in shardfile.c; *bytes gets the file's size. */
ema_status sf_write(const char *dir, const char *name, const dist_entry *const *e, size_t n, const dj_val *state,
                    const char *id, int rank, int world, uint64_t *bytes, char *err, size_t cap);

#endif

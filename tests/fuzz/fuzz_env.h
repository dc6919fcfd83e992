/* fuzz_env.h - a worker's dispatcher without libuv or sockets, for fuzz targets and tests: the real
 * config, the engine's shared state and dispatcher, static users answered at once (no loop, no
 * Redis: tests/common/static_creds.h), fake relay sockets that accept everything and a fixed clock.
 */
#ifndef UTURN_FUZZ_ENV_H
#define UTURN_FUZZ_ENV_H

#include "dispatch.h"

/* The process-wide environment (built on first use). Each call resets the dispatcher: no
 * allocation survives from one input to the next. */
dispatch_t *fuzz_env_dispatch(void);

/* A fake send sink that checks every reply is a well-formed STUN message or ChannelData. */
int fuzz_env_sink(void *ctx, const struct sockaddr *to, const uint8_t *buf, size_t len);

#endif

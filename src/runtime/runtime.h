/* runtime/: opening models by reference (local file, folder or Hub reference) into shared,
 * reference-counted instances, and completions over them (internal side).
 *
 *  - open.c:     the registry of open and opening models, k2_model_open_async (fetch on the
 *                runtime's loop, load on its worker pool), tokenizer overrides, the model
 *                attachment (tokenizer + lazily created generator) and k2_complete;
 *  - complete_ref.c: k2_complete_ref, one stream over open + completion.
 *
 * The server resolves its model reference with rtm_resolve_local / rtm_fetch_model so that
 * a reference means the same thing to every command. */
#ifndef K2_RUNTIME_H
#define K2_RUNTIME_H

#include "k2.h"

/* Decides whether `ref` names a local model. K2_OK: *path (malloc'ed) is the GGUF to load
 * (the only GGUF model of a folder, first shard of a split set). K2_ENOTFOUND with
 * *is_local false: not a local path, try the Hub. Any other status (or ENOTFOUND with
 * *is_local true): a local path that cannot be used, err says why. */
k2_status rtm_resolve_local(const char *ref, char **path, bool *is_local, k2_error *err);

/* Resolves `ref` to a local GGUF path, fetching it from the Hub when it is not local, and
 * waits (not on the loop thread). *path is malloc'ed. *stage (may be NULL) tells which
 * stage failed (download or load). */
k2_status rtm_fetch_model(k2_runtime *rt, const char *ref, const k2_hub_options *ho, char **path,
                          k2_error_stage *stage, k2_error *err);

/* k2_model_open_async with the failing stage reported through *stage (written before the
 * future settles; the pointer must stay valid until then). */
k2_future *rtm_open(k2_runtime *rt, const char *ref, const k2_model_open_options *o, k2_error_stage *stage);

#endif

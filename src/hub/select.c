#define _GNU_SOURCE
/* Model references, fnmatch globs and file selection (spec/hub.md §5). */
#include "hub/hub.h"
#include "base/base.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool id_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* §1.1: [A-Za-z0-9_] plus '.', '-' and exactly one '/'; no "--" or ".."; the ends
 * and both neighbours of '/' are base characters. */
bool hub_repo_id_valid(const char *id) {
    size_t n = strlen(id);
    if (n < 3 || n > 256 || !id_char(id[0]) || !id_char(id[n - 1])) return false;
    int slashes = 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (id_char(c) || c == '.' || c == '-') continue;
        if (c != '/') return false;
        if (!id_char(id[i - 1]) || !id_char(id[i + 1])) return false;
        slashes++;
    }
    return slashes == 1 && strstr(id, "--") == NULL && strstr(id, "..") == NULL;
}

k2_status hub_ref_parse(const char *s, hub_ref *out, k2_error *err) {
    memset(out, 0, sizeof *out);
    if (!s || !*s) return k2_err(err, K2_EINVAL, "empty model reference");
    /* accept a pasted Hub URL */
    const char *pfx[] = {"https://huggingface.co/", "hf://", "hf.co/"};
    for (size_t i = 0; i < K2_ARRAY_LEN(pfx); i++)
        if (strncmp(s, pfx[i], strlen(pfx[i])) == 0) s += strlen(pfx[i]);
    const char *slash = strchr(s, '/');
    if (!slash) return k2_err(err, K2_EINVAL, "model reference '%s': expected org/repo[:QUANT][@REVISION]", s);
    size_t rl = strcspn(s, "@:");
    if (rl >= sizeof out->repo) return k2_err(err, K2_EINVAL, "model reference '%s': repository id too long", s);
    memcpy(out->repo, s, rl);
    const char *p = s + rl;
    while (*p) {
        char kind = *p++;
        size_t l = strcspn(p, kind == '@' ? ":" : "@");
        if (kind == '@') {
            if (l == 0 || l >= sizeof out->revision || out->revision[0])
                return k2_err(err, K2_EINVAL, "model reference '%s': bad @REVISION", s);
            memcpy(out->revision, p, l);
        } else {
            if (l == 0 || l >= sizeof out->quant || out->quant[0])
                return k2_err(err, K2_EINVAL, "model reference '%s': bad :QUANT tag", s);
            memcpy(out->quant, p, l);
            for (size_t i = 0; i < l; i++)
                if (!(isalnum((unsigned char)p[i]) || strchr("_-.", p[i])))
                    return k2_err(err, K2_EINVAL, "model reference '%s': bad character in quant tag", s);
        }
        p += l;
    }
    if (!hub_repo_id_valid(out->repo))
        return k2_err(err, K2_EINVAL, "model reference '%s': '%s' is not a valid repository id (org/name)", s, out->repo);
    for (const char *c = out->revision; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == '\\' || *c == ' ')
            return k2_err(err, K2_EINVAL, "model reference '%s': bad character in revision", s);
    if (strstr(out->revision, "..")) return k2_err(err, K2_EINVAL, "model reference '%s': bad revision", s);
    return K2_OK;
}

/* ---- fnmatchcase (Python) over '/'-normalised strings ---- */
static bool glob_rec(const char *p, const char *s) {
    while (*p) {
        if (*p == '*') {
            while (*p == '*') p++;
            if (!*p) return true;
            for (; *s; s++)
                if (glob_rec(p, s)) return true;
            return glob_rec(p, s);
        }
        if (!*s) return false;
        if (*p == '?') { p++; s++; continue; }
        if (*p == '[') {
            const char *q = p + 1;
            bool neg = false;
            if (*q == '!') { neg = true; q++; }
            const char *start = q;
            /* find the closing ']' (a ']' right after '[' or '[!' is literal) */
            const char *end = q;
            if (*end == ']') end++;
            while (*end && *end != ']') end++;
            if (!*end) {  /* unmatched '[': literal */
                if (*s != '[') return false;
                p++; s++;
                continue;
            }
            bool hit = false;
            for (const char *c = start; c < end; c++) {
                if (c + 2 < end && c[1] == '-') {
                    if ((unsigned char)*s >= (unsigned char)c[0] && (unsigned char)*s <= (unsigned char)c[2]) hit = true;
                    c += 2;
                } else if (*c == *s) {
                    hit = true;
                }
            }
            if (hit == neg) return false;
            p = end + 1;
            s++;
            continue;
        }
        if (*p != *s) return false;
        p++; s++;
    }
    return *s == '\0';
}

bool hub_glob_literal(const char *pattern) {
    size_t l = strlen(pattern);
    return l > 0 && pattern[l - 1] != '/' && !strpbrk(pattern, "*?[") && hub_path_safe(pattern);
}

bool hub_glob_match(const char *pattern, const char *path) {
    size_t pl = strlen(pattern), sl = strlen(path);
    char *p = k2_malloc(pl + 2), *s = k2_malloc(sl + 1);
    if (!p || !s) { free(p); free(s); return false; }
    for (size_t i = 0; i <= pl; i++) p[i] = pattern[i] == '\\' ? '/' : pattern[i];
    for (size_t i = 0; i <= sl; i++) s[i] = path[i] == '\\' ? '/' : path[i];
    if (pl > 0 && p[pl - 1] == '/') { p[pl] = '*'; p[pl + 1] = '\0'; }
    bool r = glob_rec(p, s);
    free(p);
    free(s);
    return r;
}

bool hub_path_safe(const char *path) {
    if (!path || !*path || path[0] == '/') return false;
    if (isalpha((unsigned char)path[0]) && path[1] == ':') return false;   /* drive prefix */
    for (const char *c = path; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == '\\' || *c == 0x7f) return false;
    const char *seg = path;
    for (;;) {
        size_t l = strcspn(seg, "/");
        if (l == 0) return false;                          /* empty segment: "a//b" or trailing '/' */
        if ((l == 2 && seg[0] == '.' && seg[1] == '.') || (l == 1 && seg[0] == '.')) return false;
        if (!seg[l]) break;
        seg += l + 1;
    }
    return true;
}

bool hub_etag_safe(const char *e) {
    size_t n = strlen(e);
    if (n == 0 || n > 128 || strstr(e, "..")) return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)e[i]) || e[i] == '.' || e[i] == '_' || e[i] == '-')) return false;
    return true;
}

bool hub_shard_parse(const char *path, int *index, int *count, size_t *prefix_len) {
    size_t n = strlen(path);
    /* ...-NNNNN-of-MMMMM.gguf */
    static const size_t tail = 1 + 5 + 4 + 5 + 5;  /* "-00001-of-00003.gguf" */
    if (n < tail + 1 || strcmp(path + n - 5, ".gguf") != 0) return false;
    const char *t = path + n - tail;
    if (t[0] != '-' || memcmp(t + 6, "-of-", 4) != 0) return false;
    int a = 0, b = 0;
    for (int i = 0; i < 5; i++) {
        if (!isdigit((unsigned char)t[1 + i]) || !isdigit((unsigned char)t[10 + i])) return false;
        a = a * 10 + (t[1 + i] - '0');
        b = b * 10 + (t[10 + i] - '0');
    }
    if (a < 1 || b < 1 || a > b) return false;
    if (index) *index = a;
    if (count) *count = b;
    if (prefix_len) *prefix_len = (size_t)(t - path);
    return true;
}

void hub_entries_free(hub_entry *e, size_t n) {
    if (!e) return;
    for (size_t i = 0; i < n; i++) {
        free(e[i].path);
        free(e[i].etag);
        free(e[i].oid);
        free(e[i].xet);
    }
    free(e);
}

static int entry_cmp(const void *a, const void *b) {
    return strcmp(((const hub_entry *)a)->path, ((const hub_entry *)b)->path);
}

void hub_entries_sort(hub_entry *e, size_t n) { qsort(e, n, sizeof *e, entry_cmp); }

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* A GGUF holding model weights, not a sidecar (§5.2 step 5). */
static bool is_model_gguf(const char *path) {
    size_t n = strlen(path);
    if (n < 5 || strcasecmp(path + n - 5, ".gguf") != 0) return false;
    const char *b = base_name(path);
    static const char *side[] = {"mmproj", "imatrix", "mtp-", "eagle3-", "dflash-", "dspark-"};
    for (size_t i = 0; i < K2_ARRAY_LEN(side); i++)
        if (strcasestr(b, side[i])) return false;
    return true;
}

/* Group key of a model GGUF: path without the shard suffix / extension. */
static size_t group_len(const char *path) {
    size_t pl;
    if (hub_shard_parse(path, NULL, NULL, &pl)) return pl;
    return strlen(path) - 5;
}

static bool same_group(const char *a, const char *b) {
    size_t la = group_len(a), lb = group_len(b);
    return la == lb && strncmp(a, b, la) == 0;
}

/* Rank of a quant-tag match (lower is better; -1 = no match):
 *  0  a folder named TAG;  1  the file's tag is exactly TAG (stem ends "-TAG"/".TAG"/"_TAG",
 *  and not a longer variant such as "UD-TAG");  2  llama.cpp's rule: TAG followed by '.' or '-'. */
static int quant_rank(const char *path, const char *tag) {
    size_t tl = strlen(tag);
    /* folders */
    const char *seg = path;
    for (const char *sl; (sl = strchr(seg, '/')); seg = sl + 1)
        if ((size_t)(sl - seg) == tl && strncasecmp(seg, tag, tl) == 0) return 0;
    size_t gl = group_len(path);
    const char *b = base_name(path);
    size_t stem_end = gl;
    size_t bstart = (size_t)(b - path);
    if (stem_end >= bstart + tl + 1) {
        const char *t = path + stem_end - tl;
        char d = t[-1];
        if ((d == '-' || d == '.' || d == '_') && strncasecmp(t, tag, tl) == 0) {
            bool longer_variant = (t - 3 >= b) && strncasecmp(t - 3, "UD", 2) == 0 &&
                                  strncasecmp(tag, "UD", 2) != 0;
            if (!longer_variant) return 1;
        }
    }
    for (const char *h = path; (h = strcasestr(h, tag)); h++) {
        char c = h[tl];
        if (c == '.' || c == '-') return 2;
    }
    return -1;
}

static k2_status list_quants(const hub_entry *e, size_t n, char *buf, size_t cap) {
    buf[0] = '\0';
    size_t used = 0;
    int shown = 0;
    for (size_t i = 0; i < n && shown < 24; i++) {
        if (!is_model_gguf(e[i].path)) continue;
        int idx;
        if (hub_shard_parse(e[i].path, &idx, NULL, NULL) && idx != 1) continue;
        int w = snprintf(buf + used, cap - used, "%s%s", shown ? ", " : "", e[i].path);
        if (w < 0 || (size_t)w >= cap - used) break;
        used += (size_t)w;
        shown++;
    }
    return K2_OK;
}

k2_status hub_select(const hub_entry *e, size_t n, const char *quant, const char *const *include,
                     bool all, size_t **sel_out, size_t *n_sel_out, long *model_index, k2_error *err) {
    *sel_out = NULL;
    *n_sel_out = 0;
    *model_index = -1;
    bool *pick = k2_calloc(n ? n : 1, sizeof *pick);
    if (!pick) return k2_err(err, K2_ENOMEM, "out of memory");
    char names[2048];
    bool have_include = include && include[0];

    if (quant && *quant) {
        int best = 99;
        long first = -1;
        for (size_t i = 0; i < n; i++) {
            if (!is_model_gguf(e[i].path)) continue;
            int r = quant_rank(e[i].path, quant);
            if (r < 0) continue;
            int idx = 1;
            hub_shard_parse(e[i].path, &idx, NULL, NULL);
            if (idx != 1) continue;
            if (r < best) { best = r; first = (long)i; }
        }
        if (first < 0) {
            list_quants(e, n, names, sizeof names);
            free(pick);
            return k2_err(err, K2_ENOTFOUND, "no GGUF file matches quant tag '%s'; available: %s", quant,
                          names[0] ? names : "(no GGUF files)");
        }
        for (size_t i = 0; i < n; i++)
            if (same_group(e[i].path, e[first].path) && is_model_gguf(e[i].path)) pick[i] = true;
        /* include globs add files (tokenizer, config) on top of the quant */
        if (have_include)
            for (size_t i = 0; i < n; i++)
                for (size_t k = 0; include[k]; k++)
                    if (hub_glob_match(include[k], e[i].path)) pick[i] = true;
    } else if (have_include) {
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; include[k]; k++)
                if (hub_glob_match(include[k], e[i].path)) pick[i] = true;
    } else {
        for (size_t i = 0; i < n; i++) pick[i] = true;
    }

    /* complete shard sets (§5.3): any selected shard brings all its siblings */
    for (size_t i = 0; i < n; i++) {
        int idx, cnt;
        size_t pl;
        if (!pick[i] || !hub_shard_parse(e[i].path, &idx, &cnt, &pl)) continue;
        int found = 0;
        for (size_t j = 0; j < n; j++) {
            int idx2, cnt2;
            size_t pl2;
            if (hub_shard_parse(e[j].path, &idx2, &cnt2, &pl2) && cnt2 == cnt && pl2 == pl &&
                strncmp(e[j].path, e[i].path, pl) == 0) {
                pick[j] = true;
                found++;
            }
        }
        if (found != cnt) {
            free(pick);
            return k2_err(err, K2_EFORMAT, "%s: the repository lists %d of its %d shards; refusing an incomplete set",
                          e[i].path, found, cnt);
        }
    }

    /* ambiguity: several GGUF models selected (§5.3, the "several TB" trap) */
    long groups[64];
    int n_groups = 0;
    for (size_t i = 0; i < n; i++) {
        if (!pick[i] || !is_model_gguf(e[i].path)) continue;
        bool known = false;
        for (int g = 0; g < n_groups && !known; g++) known = same_group(e[groups[g]].path, e[i].path);
        if (!known && n_groups < 64) groups[n_groups++] = (long)i;
        else if (!known) n_groups++;
    }
    if (n_groups > 1 && !all) {
        size_t used = 0;
        names[0] = '\0';
        for (int g = 0; g < n_groups && g < 12; g++) {
            size_t gl = group_len(e[groups[g]].path);
            int w = snprintf(names + used, sizeof names - used, "%s%.*s", g ? ", " : "", (int)gl, e[groups[g]].path);
            if (w < 0 || (size_t)w >= sizeof names - used) break;
            used += (size_t)w;
        }
        free(pick);
        return k2_err(err, K2_EINVAL, "the selection contains %d different GGUF models (%s); "
                      "pick one with org/repo:QUANT or a narrower --include, or pass --all", n_groups, names);
    }
    if (n_groups > 0) *model_index = groups[0];

    size_t cnt = 0;
    for (size_t i = 0; i < n; i++) cnt += pick[i];
    if (cnt == 0) {
        free(pick);
        return k2_err(err, K2_ENOTFOUND, "no file of the repository matches the selection");
    }
    size_t *sel = k2_malloc(cnt * sizeof *sel);
    if (!sel) { free(pick); return k2_err(err, K2_ENOMEM, "out of memory"); }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (pick[i]) sel[k++] = i;
    free(pick);
    *sel_out = sel;
    *n_sel_out = cnt;
    return K2_OK;
}

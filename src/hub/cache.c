/* Environment (spec/hub.md §2, §3) and the cache layout shared with Python
 * huggingface_hub (§4). The functions here do file-system work and therefore
 * run on worker threads or in synchronous CLI paths, never on the loop thread. */
#define _GNU_SOURCE
#include "hub/hub.h"
#include "base/base.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *env(const char *name) {
    const char *v = getenv(name);
    return (v && *v) ? v : NULL;   /* empty = unset (§3) */
}

bool hub_env_truthy(const char *name) {
    const char *v = env(name);
    if (!v) return false;
    return strcasecmp(v, "1") == 0 || strcasecmp(v, "on") == 0 || strcasecmp(v, "yes") == 0 ||
           strcasecmp(v, "true") == 0;
}

/* Expands a leading ~ and $VARS / ${VARS} (Python's expanduser + expandvars). */
static char *expand_path(const char *p) {
    char buf[PATH_MAX * 2];
    size_t o = 0;
    if (p[0] == '~' && (p[1] == '/' || p[1] == '\0')) {
        const char *home = env("HOME");
        if (home) o = (size_t)snprintf(buf, sizeof buf, "%s", home);
        p++;
    }
    while (*p && o + 1 < sizeof buf) {
        if (*p == '$' && (p[1] == '{' || isalpha((unsigned char)p[1]) || p[1] == '_')) {
            const char *s = p + 1;
            bool brace = *s == '{';
            if (brace) s++;
            size_t l = 0;
            while (isalnum((unsigned char)s[l]) || s[l] == '_') l++;
            if (brace && s[l] != '}') { buf[o++] = *p++; continue; }
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)K2_MIN(l, 255), s);
            const char *v = getenv(name);
            if (v) {
                int w = snprintf(buf + o, sizeof buf - o, "%s", v);
                if (w > 0) o = K2_MIN(o + (size_t)w, sizeof buf - 1);
                p = s + l + (brace ? 1 : 0);
                continue;
            }
            /* unknown variables stay as written (Python does the same) */
        }
        buf[o++] = *p++;
    }
    buf[o] = '\0';
    if (buf[0] != '/') {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof cwd)) return k2_asprintf("%s/%s", cwd, buf);
    }
    return k2_strdup(buf);
}

char *k2_hub_cache_dir(void) {
    const char *v;
    if ((v = env("HF_HUB_CACHE")) || (v = env("HUGGINGFACE_HUB_CACHE"))) return expand_path(v);
    char *home;
    if ((v = env("HF_HOME"))) home = expand_path(v);
    else if ((v = env("XDG_CACHE_HOME"))) {
        char *x = expand_path(v);
        home = k2_asprintf("%s/huggingface", x);
        free(x);
    } else {
        const char *h = env("HOME");
        home = k2_asprintf("%s/.cache/huggingface", h ? h : "/tmp");
    }
    char *r = k2_asprintf("%s/hub", home);
    free(home);
    return r;
}

static char *hf_home(void) {
    const char *v;
    if ((v = env("HF_HOME"))) return expand_path(v);
    if ((v = env("XDG_CACHE_HOME"))) {
        char *x = expand_path(v);
        char *r = k2_asprintf("%s/huggingface", x);
        free(x);
        return r;
    }
    const char *h = env("HOME");
    return k2_asprintf("%s/.cache/huggingface", h ? h : "/tmp");
}

/* §2: HF_TOKEN, HUGGING_FACE_HUB_TOKEN, then the token file. */
static char *load_token(void) {
    const char *v;
    if ((v = env("HF_TOKEN")) || (v = env("HUGGING_FACE_HUB_TOKEN"))) return k2_strdup(v);
    char *path;
    if ((v = env("HF_TOKEN_PATH"))) path = expand_path(v);
    else {
        char *h = hf_home();
        path = k2_asprintf("%s/token", h);
        free(h);
    }
    char *data = NULL;
    size_t size = 0;
    if (!path || k2_read_file(path, &data, &size, NULL) != K2_OK) {
        free(path);
        return NULL;
    }
    free(path);
    /* remove CR/LF, trim whitespace */
    size_t o = 0;
    for (size_t i = 0; i < size; i++)
        if (data[i] != '\r' && data[i] != '\n') data[o++] = data[i];
    data[o] = '\0';
    char *s = data;
    while (isspace((unsigned char)*s)) s++;
    size_t l = strlen(s);
    while (l && isspace((unsigned char)s[l - 1])) l--;
    char *r = l ? k2_strndup(s, l) : NULL;
    free(data);
    return r;
}

static int env_int(const char *name, int def) {
    const char *v = env(name);
    if (!v) return def;
    char *end;
    long x = strtol(v, &end, 10);
    return (*end || x <= 0 || x > 86400) ? def : (int)x;
}

k2_status hub_config_load(const k2_hub_options *o, hub_config *c, k2_error *err) {
    memset(c, 0, sizeof *c);
    const char *ep = (o && o->endpoint) ? o->endpoint : env("HF_ENDPOINT");
    c->endpoint = k2_strdup(ep ? ep : "https://huggingface.co");
    size_t l = strlen(c->endpoint);
    while (l > 0 && c->endpoint[l - 1] == '/') c->endpoint[--l] = '\0';
    if (strncmp(c->endpoint, "http://", 7) != 0 && strncmp(c->endpoint, "https://", 8) != 0) {
        k2_err(err, K2_EINVAL, "HF_ENDPOINT '%s' must start with http:// or https://", c->endpoint);
        hub_config_free(c);
        return K2_EINVAL;
    }
    c->cache_dir = (o && o->cache_dir) ? expand_path(o->cache_dir) : k2_hub_cache_dir();
    if (o && o->token && *o->token) c->token = k2_strdup(o->token);
    else if (!hub_env_truthy("HF_HUB_DISABLE_IMPLICIT_TOKEN")) c->token = load_token();
    if (c->token) {
        for (const char *t = c->token; *t; t++)
            if ((unsigned char)*t <= 0x20 || *t == 0x7f) {
                hub_config_free(c);
                return k2_err(err, K2_EAUTH, "the Hugging Face token contains whitespace or control characters");
            }
    }
    c->offline = (o && o->offline) || hub_env_truthy("HF_HUB_OFFLINE") || hub_env_truthy("TRANSFORMERS_OFFLINE");
    c->etag_timeout_s = env_int("HF_HUB_ETAG_TIMEOUT", 10);
    c->download_timeout_s = env_int("HF_HUB_DOWNLOAD_TIMEOUT", 10);
    return K2_OK;
}

void hub_config_free(hub_config *c) {
    free(c->endpoint);
    free(c->cache_dir);
    if (c->token) {
        memset(c->token, 0, strlen(c->token));
        free(c->token);
    }
    memset(c, 0, sizeof *c);
}

char *hub_repo_folder(const char *repo) {
    size_t n = strlen(repo);
    char *r = k2_malloc(8 + n * 2 + 1);
    if (!r) return NULL;
    strcpy(r, "models--");
    char *o = r + 8;
    for (size_t i = 0; i < n; i++) {
        if (repo[i] == '/') { *o++ = '-'; *o++ = '-'; }
        else *o++ = repo[i];
    }
    *o = '\0';
    return r;
}

k2_status hub_mkdirs(const char *path, k2_error *err) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return k2_err(err, K2_EINVAL, "%s: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return k2_err(err, K2_EIO, "%s: cannot create directory: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return k2_err(err, K2_EIO, "%s: cannot create directory: %s", buf, strerror(errno));
    return K2_OK;
}

bool hub_file_exists(const char *path, uint64_t *size) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return false;
    if (size) *size = (uint64_t)st.st_size;
    return true;
}

bool hub_is_commit(const char *rev) {
    if (strlen(rev) != 40) return false;
    for (int i = 0; i < 40; i++)
        if (!isdigit((unsigned char)rev[i]) && !(rev[i] >= 'a' && rev[i] <= 'f')) return false;
    return true;
}

k2_status hub_make_pointer(const char *repo_dir, const char *commit, const char *path, const char *etag,
                           k2_error *err) {
    char *snap = k2_asprintf("%s/snapshots/%s/%s", repo_dir, commit, path);
    char *dir = k2_strdup(snap);
    if (!snap || !dir) { free(snap); free(dir); return k2_err(err, K2_ENOMEM, "out of memory"); }
    *strrchr(dir, '/') = '\0';
    k2_status st = hub_mkdirs(dir, err);
    free(dir);
    if (st != K2_OK) { free(snap); return st; }
    /* ../ repeated (2 + number of '/' in path) times, then blobs/<etag> */
    int ups = 2;
    for (const char *c = path; *c; c++) ups += *c == '/';
    char target[PATH_MAX];
    size_t o = 0;
    for (int i = 0; i < ups; i++) o += (size_t)snprintf(target + o, sizeof target - o, "../");
    snprintf(target + o, sizeof target - o, "blobs/%s", etag);
    char cur[PATH_MAX];
    ssize_t cl = readlink(snap, cur, sizeof cur - 1);
    if (cl >= 0) {
        cur[cl] = '\0';
        if (strcmp(cur, target) == 0) { free(snap); return K2_OK; }
    }
    if (hub_env_truthy("HF_HUB_DISABLE_SYMLINKS")) {
        /* degraded mode (§4.4): a copy of the blob as a plain file, written atomically */
        char *blob = k2_asprintf("%s/blobs/%s", repo_dir, etag);
        char *tmp = k2_asprintf("%s.k2tmp%d", snap, (int)getpid());
        int in = open(blob, O_RDONLY | O_CLOEXEC);
        int out = in >= 0 ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666) : -1;
        bool ok = in >= 0 && out >= 0;
        char buf[1 << 16];
        ssize_t r;
        while (ok && (r = read(in, buf, sizeof buf)) > 0) ok = write(out, buf, (size_t)r) == r;
        if (in >= 0) close(in);
        if (out >= 0 && close(out) != 0) ok = false;
        if (ok) ok = rename(tmp, snap) == 0;
        if (!ok) unlink(tmp);
        free(blob);
        free(tmp);
        k2_status s2 = ok ? K2_OK : k2_err(err, K2_EIO, "%s: cannot copy the blob: %s", snap, strerror(errno));
        free(snap);
        return s2;
    }
    /* replace atomically: link under a temp name, then rename over the old entry */
    char *tmp = k2_asprintf("%s.k2link%d", snap, (int)getpid());
    unlink(tmp);
    if (symlink(target, tmp) != 0 || rename(tmp, snap) != 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        /* a concurrent creator may have won the race with the same target */
        cl = readlink(snap, cur, sizeof cur - 1);
        if (cl >= 0) {
            cur[cl] = '\0';
            if (strcmp(cur, target) == 0) { free(snap); return K2_OK; }
        }
        k2_err(err, K2_EIO, "%s: cannot create the snapshot link: %s", snap, strerror(e));
        free(snap);
        return K2_EIO;
    }
    free(tmp);
    free(snap);
    return K2_OK;
}

k2_status hub_write_ref(const char *repo_dir, const char *rev, const char *commit, k2_error *err) {
    char *path = k2_asprintf("%s/refs/%s", repo_dir, rev);
    char *dir = k2_strdup(path);
    *strrchr(dir, '/') = '\0';
    k2_status st = hub_mkdirs(dir, err);
    free(dir);
    if (st != K2_OK) { free(path); return st; }
    char *data = NULL;
    size_t size = 0;
    if (k2_read_file(path, &data, &size, NULL) == K2_OK) {
        bool same = size >= 40 && strncmp(data, commit, 40) == 0;
        free(data);
        if (same) { free(path); return K2_OK; }   /* leave read-only caches alone */
    }
    char *tmp = k2_asprintf("%s.k2tmp%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    bool ok = fd >= 0 && write(fd, commit, 40) == 40;
    if (fd >= 0 && close(fd) != 0) ok = false;
    if (ok) ok = rename(tmp, path) == 0;
    if (!ok) {
        k2_err(err, K2_EIO, "%s: cannot write the ref: %s", path, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    free(path);
    return ok ? K2_OK : K2_EIO;
}

/* ---- trees/<commit>.json (§4.9) ---- */
static bool all_hex(const char *h, size_t len) {
    if (!h || strlen(h) != len) return false;
    for (size_t i = 0; i < len; i++)
        if (!isxdigit((unsigned char)h[i])) return false;
    return true;
}

bool hub_xet_hash_valid(const char *h) { return all_hex(h, 64); }

k2_status hub_tree_read(const char *repo_dir, const char *commit, hub_entry **out, size_t *n, k2_error *err) {
    *out = NULL;
    *n = 0;
    if (!hub_is_commit(commit)) return k2_err(err, K2_ENOTFOUND, "not a commit");
    char *path = k2_asprintf("%s/trees/%s.json", repo_dir, commit);
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    if (!doc) {
        k2_status st = k2_err(err, K2_ENOTFOUND, "%s: no usable tree listing", path);
        free(path);
        return st;
    }
    json_t *files = json_object_get(doc, "files");
    json_t *fv = json_object_get(doc, "format_version");
    k2_status st = K2_OK;
    if (!json_is_integer(fv) || json_integer_value(fv) != 1 || !json_is_object(files))
        st = k2_err(err, K2_ENOTFOUND, "%s: unknown format_version or no 'files' object", path);
    size_t cap = st == K2_OK ? json_object_size(files) : 0;
    hub_entry *e = k2_calloc(cap ? cap : 1, sizeof *e);
    size_t ne = 0;
    const char *key;
    json_t *it;
    if (st == K2_OK) json_object_foreach(files, key, it) {
        json_t *sz = json_object_get(it, "size");
        const char *blob = json_string_value(json_object_get(it, "blob_id"));
        json_t *lsha = json_object_get(it, "lfs_sha256"), *xh = json_object_get(it, "xet_hash");
        const char *sha = json_string_value(lsha), *xet = json_string_value(xh);
        /* any doubtful entry disqualifies the whole file (Python ignores it too) */
        if (!hub_path_safe(key) || !json_is_integer(sz) || json_integer_value(sz) < 0 || !blob || !hub_etag_safe(blob) ||
            (lsha && !json_is_null(lsha) && (!sha || !hub_etag_safe(sha))) ||
            (xh && !json_is_null(xh) && !hub_xet_hash_valid(xet))) {
            st = k2_err(err, K2_ENOTFOUND, "%s: entry '%s' is not valid", path, key);
            break;
        }
        hub_entry *en = &e[ne++];
        en->path = k2_strdup(key);
        en->size = (uint64_t)json_integer_value(sz);
        en->lfs = sha != NULL;
        en->etag = k2_strdup(sha ? sha : blob);
        en->oid = k2_strdup(blob);
        en->xet = xet ? k2_strdup(xet) : NULL;
    }
    json_decref(doc);
    free(path);
    if (st != K2_OK) {
        hub_entries_free(e, ne);
        return st;
    }
    hub_entries_sort(e, ne);
    *out = e;
    *n = ne;
    return K2_OK;
}

k2_status hub_tree_write(const char *repo_dir, const char *commit, const hub_entry *e, size_t n, k2_error *err) {
    if (!hub_is_commit(commit)) return k2_err(err, K2_EINVAL, "not a commit");
    json_t *files = json_object();
    for (size_t i = 0; i < n; i++) {
        if (!e[i].oid || (e[i].xet && !hub_xet_hash_valid(e[i].xet))) {
            json_decref(files);
            return k2_err(err, K2_EINVAL, "%s: incomplete listing metadata; not writing trees/%s.json", e[i].path, commit);
        }
        json_t *o = json_object();
        json_object_set_new(o, "size", json_integer((json_int_t)e[i].size));
        json_object_set_new(o, "blob_id", json_string(e[i].oid));
        if (e[i].lfs) {
            json_object_set_new(o, "lfs_sha256", json_string(e[i].etag));
            json_object_set_new(o, "lfs_size", json_integer((json_int_t)e[i].size));
        }
        if (e[i].xet) json_object_set_new(o, "xet_hash", json_string(e[i].xet));
        json_object_set_new(files, e[i].path, o);
    }
    json_t *doc = json_object();
    json_object_set_new(doc, "format_version", json_integer(1));
    json_object_set_new(doc, "files", files);
    char *dir = k2_asprintf("%s/trees", repo_dir);
    char *path = k2_asprintf("%s/%s.json", dir, commit);
    char *tmp = k2_asprintf("%s.k2tmp%d", path, (int)getpid());
    k2_status st = hub_mkdirs(dir, err);
    if (st == K2_OK) {
        /* sorted keys, indent 1: the same text Python writes */
        if (json_dump_file(doc, tmp, JSON_SORT_KEYS | JSON_INDENT(1)) != 0 || rename(tmp, path) != 0) {
            st = k2_err(err, K2_EIO, "%s: cannot write the tree listing: %s", path, strerror(errno));
            unlink(tmp);
        }
    }
    json_decref(doc);
    free(dir);
    free(path);
    free(tmp);
    return st;
}

/* ---- .no_exist/<commit>/<path> markers (§4.6) ---- */
bool hub_no_exist_check(const char *repo_dir, const char *commit, const char *path) {
    if (!hub_is_commit(commit) || !hub_path_safe(path)) return false;
    char *m = k2_asprintf("%s/.no_exist/%s/%s", repo_dir, commit, path);
    struct stat st;
    bool r = m && stat(m, &st) == 0 && S_ISREG(st.st_mode);
    free(m);
    return r;
}

void hub_no_exist_mark(const char *repo_dir, const char *commit, const char *path) {
    /* best effort, like Python: a read-only cache only loses the shortcut */
    if (!hub_is_commit(commit) || !hub_path_safe(path)) return;
    char *m = k2_asprintf("%s/.no_exist/%s/%s", repo_dir, commit, path);
    char *dir = m ? k2_strdup(m) : NULL;
    if (dir) {
        *strrchr(dir, '/') = '\0';
        if (hub_mkdirs(dir, NULL) == K2_OK) {
            int fd = open(m, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
            if (fd >= 0) close(fd);
        }
    }
    free(dir);
    free(m);
}

/* An entry for snapshots/<commit>/<path> if it is a complete file (symlink
 * resolved); the etag comes from the link target, "" for a plain file (§4.4). */
static bool snapshot_entry(const char *full, const char *rel, hub_entry *e) {
    struct stat st, lst;
    if (lstat(full, &lst) != 0 || stat(full, &st) != 0 || !S_ISREG(st.st_mode)) return false;
    memset(e, 0, sizeof *e);
    e->path = k2_strdup(rel);
    e->size = (uint64_t)st.st_size;
    char tgt[PATH_MAX];
    ssize_t l = S_ISLNK(lst.st_mode) ? readlink(full, tgt, sizeof tgt - 1) : -1;
    if (l > 0) {
        tgt[l] = '\0';
        const char *b = strrchr(tgt, '/');
        e->etag = k2_strdup(b ? b + 1 : tgt);
        e->lfs = strlen(e->etag) == 64;
    } else {
        e->etag = k2_strdup("");
    }
    return true;
}

k2_status hub_cached_paths(const char *repo_dir, const char *commit, const char *const *paths, hub_entry **out,
                           size_t *n_out, char ***absent, size_t *n_absent, k2_error *err) {
    size_t np = 0;
    while (paths[np]) np++;
    hub_entry *e = k2_calloc(np ? np : 1, sizeof *e);
    char **ab = k2_calloc(np + 1, sizeof *ab);
    size_t ne = 0, na = 0;
    k2_status st = K2_OK;
    for (size_t i = 0; i < np && st == K2_OK; i++) {
        char *full = k2_asprintf("%s/snapshots/%s/%s", repo_dir, commit, paths[i]);
        if (hub_path_safe(paths[i]) && snapshot_entry(full, paths[i], &e[ne])) ne++;
        else if (hub_no_exist_check(repo_dir, commit, paths[i])) ab[na++] = k2_strdup(paths[i]);
        else st = k2_err(err, K2_ENOTFOUND, "%s: %s is neither in snapshot %s nor known to be absent", repo_dir, paths[i], commit);
        free(full);
    }
    if (st != K2_OK) {
        hub_entries_free(e, ne);
        for (size_t i = 0; i < na; i++) free(ab[i]);
        free(ab);
        return st;
    }
    *out = e;
    *n_out = ne;
    *absent = ab;
    *n_absent = na;
    return K2_OK;
}

/* ---- offline listing (§4.13) ---- */
typedef struct entry_vec {
    hub_entry *e;
    size_t n, cap;
} entry_vec;

static void scan_snapshot(const char *root, const char *rel, entry_vec *v, int depth) {
    if (depth > 32) return;
    char *dirpath = rel[0] ? k2_asprintf("%s/%s", root, rel) : k2_strdup(root);
    DIR *d = opendir(dirpath);
    if (!d) { free(dirpath); return; }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2]))) continue;
        if (strstr(de->d_name, ".k2link") || strstr(de->d_name, ".k2tmp")) continue;
        char *r2 = rel[0] ? k2_asprintf("%s/%s", rel, de->d_name) : k2_strdup(de->d_name);
        char *full = k2_asprintf("%s/%s", root, r2);
        struct stat lst;
        if (lstat(full, &lst) == 0 && S_ISDIR(lst.st_mode)) {
            scan_snapshot(root, r2, v, depth + 1);
        } else {
            if (v->n == v->cap) {
                v->cap = v->cap ? v->cap * 2 : 32;
                v->e = k2_realloc(v->e, v->cap * sizeof *v->e);
            }
            if (snapshot_entry(full, r2, &v->e[v->n])) v->n++;
        }
        free(r2);
        free(full);
    }
    closedir(d);
    free(dirpath);
}

k2_status hub_offline_listing(const char *repo_dir, const char *revision, char commit[41], hub_entry **out,
                              size_t *n, k2_error *err) {
    *out = NULL;
    *n = 0;
    struct stat st;
    if (stat(repo_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return k2_err(err, K2_ENOTFOUND, "%s: not in the cache", repo_dir);
    const char *rev = revision && *revision ? revision : "main";
    if (hub_is_commit(rev)) {
        memcpy(commit, rev, 41);
    } else {
        char *path = k2_asprintf("%s/refs/%s", repo_dir, rev);
        char *data = NULL;
        size_t size = 0;
        k2_status s = k2_read_file(path, &data, &size, NULL);
        free(path);
        if (s != K2_OK) return k2_err(err, K2_ENOTFOUND, "%s: revision '%s' is not in the cache (no refs/%s)", repo_dir, rev, rev);
        char *t = data;
        while (isspace((unsigned char)*t)) t++;
        size_t l = strlen(t);
        while (l && isspace((unsigned char)t[l - 1])) t[--l] = '\0';
        bool ok = hub_is_commit(t);
        if (ok) memcpy(commit, t, 41);
        free(data);
        if (!ok) return k2_err(err, K2_EFORMAT, "%s/refs/%s: not a commit hash", repo_dir, rev);
    }
    char *snap = k2_asprintf("%s/snapshots/%s", repo_dir, commit);
    entry_vec v = {0};
    scan_snapshot(snap, "", &v, 0);
    free(snap);
    if (v.n == 0) {   /* the caller decides (known-absent paths need no snapshot) */
        free(v.e);
        return K2_OK;
    }
    hub_entries_sort(v.e, v.n);
    *out = v.e;
    *n = v.n;
    return K2_OK;
}

/* ---- cache scan / removal (synchronous, for `k2 cache`) ---- */
static uint64_t dir_size(const char *path, int *incomplete, int depth) {
    uint64_t total = 0;
    DIR *d = opendir(path);
    if (!d || depth > 32) { if (d) closedir(d); return 0; }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char *full = k2_asprintf("%s/%s", path, de->d_name);
        struct stat st;
        if (lstat(full, &st) == 0) {
            if (S_ISDIR(st.st_mode)) total += dir_size(full, incomplete, depth + 1);
            else if (S_ISREG(st.st_mode)) {
                total += (uint64_t)st.st_blocks * 512;
                size_t l = strlen(de->d_name);
                if (incomplete && l > 11 && strcmp(de->d_name + l - 11, ".incomplete") == 0) (*incomplete)++;
            }
        }
        free(full);
    }
    closedir(d);
    return total;
}

static int count_entries(const char *path) {
    DIR *d = opendir(path);
    if (!d) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

static void collect_refs(const char *dir, const char *prefix, char *buf, size_t cap, int depth) {
    DIR *d = opendir(dir);
    if (!d || depth > 8) { if (d) closedir(d); return; }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char *full = k2_asprintf("%s/%s", dir, de->d_name);
        char *name = prefix[0] ? k2_asprintf("%s/%s", prefix, de->d_name) : k2_strdup(de->d_name);
        struct stat st;
        if (stat(full, &st) == 0 && S_ISDIR(st.st_mode)) {
            collect_refs(full, name, buf, cap, depth + 1);
        } else {
            char *data = NULL;
            size_t size = 0;
            if (k2_read_file(full, &data, &size, NULL) == K2_OK) {
                size_t used = strlen(buf);
                snprintf(buf + used, cap - used, "%s%s=%.7s", used ? ", " : "", name, data);
                free(data);
            }
        }
        free(full);
        free(name);
    }
    closedir(d);
}

static int repo_cmp(const void *a, const void *b) {
    return strcmp(((const k2_hub_cached_repo *)a)->repo_id, ((const k2_hub_cached_repo *)b)->repo_id);
}

k2_status k2_hub_cache_scan(const char *cache_dir, k2_hub_cached_repo **out, size_t *n, k2_error *err) {
    *out = NULL;
    *n = 0;
    char *dirp = cache_dir ? k2_strdup(cache_dir) : k2_hub_cache_dir();
    DIR *d = opendir(dirp);
    if (!d) {
        k2_status s = errno == ENOENT ? K2_OK : k2_err(err, K2_EIO, "%s: cannot read the cache: %s", dirp, strerror(errno));
        free(dirp);
        return s;
    }
    size_t cap = 0;
    k2_hub_cached_repo *v = NULL;
    struct dirent *de;
    static const struct { const char *prefix, *kind; } kinds[] = {
        {"models--", "model"}, {"datasets--", "dataset"}, {"spaces--", "space"}, {"kernels--", "kernel"}};
    while ((de = readdir(d))) {
        const char *kind = NULL;
        size_t pl = 0;
        for (size_t k = 0; k < K2_ARRAY_LEN(kinds); k++)
            if (strncmp(de->d_name, kinds[k].prefix, strlen(kinds[k].prefix)) == 0) {
                kind = kinds[k].kind;
                pl = strlen(kinds[k].prefix);
            }
        if (!kind) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            v = k2_realloc(v, cap * sizeof *v);
        }
        k2_hub_cached_repo *r = &v[(*n)++];
        memset(r, 0, sizeof *r);
        /* reverse mapping: "--" -> "/" */
        const char *src = de->d_name + pl;
        r->repo_id = k2_malloc(strlen(src) + 1);
        char *o = r->repo_id;
        for (const char *c = src; *c;) {
            if (c[0] == '-' && c[1] == '-') { *o++ = '/'; c += 2; }
            else *o++ = *c++;
        }
        *o = '\0';
        r->kind = k2_strdup(kind);
        r->path = k2_asprintf("%s/%s", dirp, de->d_name);
        r->size = dir_size(r->path, &r->n_incomplete, 0);
        char *snaps = k2_asprintf("%s/snapshots", r->path);
        r->n_snapshots = count_entries(snaps);
        free(snaps);
        char refs[1024] = "";
        char *refdir = k2_asprintf("%s/refs", r->path);
        collect_refs(refdir, "", refs, sizeof refs, 0);
        free(refdir);
        r->refs = k2_strdup(refs);
    }
    closedir(d);
    free(dirp);
    if (*n) qsort(v, *n, sizeof *v, repo_cmp);
    *out = v;
    return K2_OK;
}

void k2_hub_cache_scan_free(k2_hub_cached_repo *repos, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(repos[i].repo_id);
        free(repos[i].kind);
        free(repos[i].path);
        free(repos[i].refs);
    }
    free(repos);
}

static int rm_tree(const char *path, int depth) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode)) return unlink(path);
    if (depth > 64) return -1;
    DIR *d = opendir(path);
    if (!d) return -1;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char *full = k2_asprintf("%s/%s", path, de->d_name);
        if (rm_tree(full, depth + 1) != 0) rc = -1;
        free(full);
    }
    closedir(d);
    if (rmdir(path) != 0) rc = -1;
    return rc;
}

k2_status k2_hub_cache_remove(const char *cache_dir, const char *repo_id, k2_error *err) {
    if (!hub_repo_id_valid(repo_id)) return k2_err(err, K2_EINVAL, "'%s' is not a valid repository id", repo_id);
    char *dirp = cache_dir ? k2_strdup(cache_dir) : k2_hub_cache_dir();
    char *folder = hub_repo_folder(repo_id);
    char *path = k2_asprintf("%s/%s", dirp, folder);
    char *locks = k2_asprintf("%s/.locks/%s", dirp, folder);
    struct stat st;
    k2_status s = K2_OK;
    if (stat(path, &st) != 0) s = k2_err(err, K2_ENOTFOUND, "%s is not in the cache (%s)", repo_id, path);
    else if (rm_tree(path, 0) != 0) s = k2_err(err, K2_EIO, "%s: cannot delete: %s", path, strerror(errno));
    if (s == K2_OK) rm_tree(locks, 0);
    free(dirp);
    free(folder);
    free(path);
    free(locks);
    return s;
}

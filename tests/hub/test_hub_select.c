/* Reference parsing, fnmatch globs (huggingface_hub semantics), path safety and
 * quant/shard selection (spec/hub.md §1.1, §4.4, §5). */
#include "testutil.h"
#include "hub/hub.h"
#include "base/base.h"

#include <stdlib.h>
#include <string.h>

static hub_entry *mk(const char *const *paths, size_t n) {
    hub_entry *e = calloc(n, sizeof *e);
    for (size_t i = 0; i < n; i++) {
        e[i].path = k2_strdup(paths[i]);
        e[i].etag = k2_strdup("0123456789012345678901234567890123456789");
        e[i].size = 100;
    }
    hub_entries_sort(e, n);
    return e;
}

static int sel_has(const hub_entry *e, const size_t *sel, size_t n, const char *path) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(e[sel[i]].path, path) == 0) return 1;
    return 0;
}

int main(void) {
    k2_error err;
    hub_ref r;
    CHECK_OK(hub_ref_parse("unsloth/Kimi-K2-Instruct-GGUF:UD-Q2_K_XL", &r, &err), &err);
    CHECK(!strcmp(r.repo, "unsloth/Kimi-K2-Instruct-GGUF") && !strcmp(r.quant, "UD-Q2_K_XL") && !r.revision[0]);
    CHECK_OK(hub_ref_parse("org/repo@v1.0:Q4_K_M", &r, &err), &err);
    CHECK(!strcmp(r.repo, "org/repo") && !strcmp(r.revision, "v1.0") && !strcmp(r.quant, "Q4_K_M"));
    CHECK_OK(hub_ref_parse("org/repo:Q8_0@refs/pr/1", &r, &err), &err);
    CHECK(!strcmp(r.revision, "refs/pr/1") && !strcmp(r.quant, "Q8_0"));
    CHECK_OK(hub_ref_parse("https://huggingface.co/org/repo", &r, &err), &err);
    CHECK(!strcmp(r.repo, "org/repo"));
    CHECK(hub_ref_parse("gpt2", &r, &err) == K2_EINVAL);
    CHECK(hub_ref_parse("a/b/c", &r, &err) == K2_EINVAL);
    CHECK(hub_ref_parse("org/re--po", &r, &err) == K2_EINVAL);
    CHECK(hub_ref_parse("org/../x", &r, &err) == K2_EINVAL);
    CHECK(hub_ref_parse("org/repo:", &r, &err) == K2_EINVAL);
    CHECK(hub_ref_parse("org/repo@", &r, &err) == K2_EINVAL);
    CHECK(hub_ref_parse("org/repo:Q4 K", &r, &err) == K2_EINVAL);
    CHECK(hub_ref_parse("", &r, &err) == K2_EINVAL);

    /* fnmatchcase: '*' crosses '/', case-sensitive, [!...], literal unmatched '[' */
    CHECK(hub_glob_match("*.gguf", "Q4_K_M/x-00001-of-00003.gguf"));
    CHECK(!hub_glob_match("*.GGUF", "a.gguf"));
    CHECK(hub_glob_match("Q4_K_M/", "Q4_K_M/a/b.gguf"));
    /* explicit paths (.no_exist candidates) vs patterns */
    CHECK(hub_glob_literal("config.json") && hub_glob_literal("sub/tokenizer.json"));
    CHECK(!hub_glob_literal("*.json") && !hub_glob_literal("Q4_K_M/") && !hub_glob_literal("a[bc]") && !hub_glob_literal("../x"));
    CHECK(hub_glob_match("Q4_K_M\\*", "Q4_K_M/a.gguf"));
    CHECK(hub_glob_match("UD-Q4_K_XL/*-0000[1-3]-of-*", "UD-Q4_K_XL/m-00002-of-00013.gguf"));
    CHECK(!hub_glob_match("UD-Q4_K_XL/*-0000[1-3]-of-*", "UD-Q4_K_XL/m-00004-of-00013.gguf"));
    CHECK(hub_glob_match("[!a]*", "b.txt") && !hub_glob_match("[!a]*", "a.txt"));
    CHECK(hub_glob_match("a[b", "a[b") && !hub_glob_match("a[b", "ab"));
    CHECK(hub_glob_match("?.md", "a.md") && hub_glob_match("a?b", "a/b"));
    CHECK(hub_glob_match("**.json", "x/y.json"));
    CHECK(!hub_glob_match("{a,b}.json", "a.json"));

    CHECK(hub_path_safe("Q4_K_M/x.gguf") && hub_path_safe("README.md") && hub_path_safe(".gitattributes"));
    CHECK(!hub_path_safe("../evil") && !hub_path_safe("a/../b") && !hub_path_safe("/etc/passwd"));
    CHECK(!hub_path_safe("a\\b") && !hub_path_safe("C:x") && !hub_path_safe("a//b") && !hub_path_safe("a/"));
    CHECK(!hub_path_safe("a\nb") && !hub_path_safe("./a") && !hub_path_safe(""));
    CHECK(hub_etag_safe("0123abcd") && !hub_etag_safe("../x") && !hub_etag_safe("a/b") && !hub_etag_safe(""));

    int idx, cnt;
    size_t pl;
    CHECK(hub_shard_parse("Q2/m-Q2-00002-of-00008.gguf", &idx, &cnt, &pl) && idx == 2 && cnt == 8 && pl == 7);
    CHECK(!hub_shard_parse("m-00009-of-00008.gguf", &idx, &cnt, &pl));
    CHECK(!hub_shard_parse("m.gguf", &idx, &cnt, &pl));

    static const char *const paths[] = {
        "README.md", ".gitattributes",
        "UD-Q2_K_XL/Kimi-K2-Instruct-UD-Q2_K_XL-00002-of-00003.gguf",
        "UD-Q2_K_XL/Kimi-K2-Instruct-UD-Q2_K_XL-00001-of-00003.gguf",
        "UD-Q2_K_XL/Kimi-K2-Instruct-UD-Q2_K_XL-00003-of-00003.gguf",
        "Q2_K_XL/Kimi-K2-Instruct-Q2_K_XL-00001-of-00002.gguf",
        "Q2_K_XL/Kimi-K2-Instruct-Q2_K_XL-00002-of-00002.gguf",
        "Kimi-K2-Instruct-Q8_0.gguf",
        "mmproj-Kimi-F16.gguf",
        "imatrix_unsloth.gguf",
    };
    size_t n = K2_ARRAY_LEN(paths);
    hub_entry *e = mk(paths, n);
    size_t *sel, ns;
    long mi;
    CHECK_OK(hub_select(e, n, "ud-q2_k_xl", NULL, false, &sel, &ns, &mi, &err), &err);
    CHECK(ns == 3 && sel_has(e, sel, ns, "UD-Q2_K_XL/Kimi-K2-Instruct-UD-Q2_K_XL-00003-of-00003.gguf"));
    CHECK(mi >= 0 && strstr(e[mi].path, "00001-of-00003"));
    free(sel);
    CHECK_OK(hub_select(e, n, "Q2_K_XL", NULL, false, &sel, &ns, &mi, &err), &err);
    CHECK(ns == 2 && sel_has(e, sel, ns, "Q2_K_XL/Kimi-K2-Instruct-Q2_K_XL-00002-of-00002.gguf"));
    free(sel);
    CHECK_OK(hub_select(e, n, "q8_0", NULL, false, &sel, &ns, &mi, &err), &err);
    CHECK(ns == 1 && !strcmp(e[sel[0]].path, "Kimi-K2-Instruct-Q8_0.gguf"));
    free(sel);
    CHECK(hub_select(e, n, "Q4_K_M", NULL, false, &sel, &ns, &mi, &err) == K2_ENOTFOUND);
    CHECK(strstr(err.message, "Q4_K_M") && strstr(err.message, "Kimi-K2-Instruct-Q8_0.gguf"));
    CHECK(hub_select(e, n, NULL, NULL, false, &sel, &ns, &mi, &err) == K2_EINVAL);
    CHECK(strstr(err.message, "--all"));
    const char *glob1[] = {"*.gguf", NULL};
    CHECK(hub_select(e, n, NULL, glob1, false, &sel, &ns, &mi, &err) == K2_EINVAL);
    CHECK_OK(hub_select(e, n, NULL, glob1, true, &sel, &ns, &mi, &err), &err);
    CHECK(ns == 8);
    free(sel);
    const char *glob2[] = {"UD-Q2_K_XL/*-00002-of-*", "README.md", NULL};
    CHECK_OK(hub_select(e, n, NULL, glob2, false, &sel, &ns, &mi, &err), &err);
    CHECK(ns == 4);   /* the whole shard set + README */
    free(sel);
    const char *glob3[] = {"*.json", NULL};
    CHECK(hub_select(e, n, NULL, glob3, false, &sel, &ns, &mi, &err) == K2_ENOTFOUND);
    hub_entries_free(e, n);

    /* a shard set with a missing member is refused */
    static const char *const broken[] = {"m-00001-of-00003.gguf", "m-00003-of-00003.gguf"};
    e = mk(broken, 2);
    CHECK(hub_select(e, 2, NULL, NULL, false, &sel, &ns, &mi, &err) == K2_EFORMAT);
    CHECK(strstr(err.message, "2 of its 3 shards"));
    hub_entries_free(e, 2);

    char *folder = hub_repo_folder("unsloth/Kimi-K2-Instruct-GGUF");
    CHECK(!strcmp(folder, "models--unsloth--Kimi-K2-Instruct-GGUF"));
    free(folder);
    char *enc = hub_encode_path("a b/c#d%e+.gguf");
    CHECK(!strcmp(enc, "a%20b/c%23d%25e%2B.gguf"));
    free(enc);
    enc = hub_encode_segment("refs/pr/1");
    CHECK(!strcmp(enc, "refs%2Fpr%2F1"));
    free(enc);
    CHECK(hub_same_origin("http://127.0.0.1:80/x", "http://127.0.0.1/y"));
    CHECK(!hub_same_origin("http://127.0.0.1:8080/x", "http://127.0.0.1:8081/x"));
    CHECK(!hub_same_origin("https://huggingface.co/x", "http://huggingface.co/x"));
    CHECK(hub_same_origin("https://HuggingFace.co/a", "https://huggingface.co:443/b"));
    CHECK(hub_is_https_downgrade("https://a/x", "http://a/x") && !hub_is_https_downgrade("http://a", "https://a"));
    return k2t_finish("test_hub_select");
}

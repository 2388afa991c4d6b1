/* Minimal test harness: CHECK macros count failures; main returns k2t_finish(). */
#ifndef K2_TESTUTIL_H
#define K2_TESTUTIL_H

#include "k2.h"
#include <stdbool.h>
#include <stdio.h>

extern int k2t_failures;
extern int k2t_checks;

#define CHECK(cond) do { k2t_checks++; if (!(cond)) { k2t_failures++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_MSG(cond, ...) do { k2t_checks++; if (!(cond)) { k2t_failures++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
#define CHECK_OK(expr, errp) do { k2_status s_ = (expr); k2t_checks++; if (s_ != K2_OK) { k2t_failures++; \
    fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #expr, k2_status_name(s_), (errp)->message); } } while (0)

/* Path of shared/ (fixtures, specs). When absent: returns NULL after printing a
 * skip message — callers exit 77 — except under CI=true, where it is a failure. */
const char *k2t_shared_dir(void);
/* Joins shared dir and a relative path into a static buffer (NULL if shared is absent). */
const char *k2t_shared_path(const char *rel);
/* A fresh temporary directory for this test (removed by the OS/CI; not by us). */
const char *k2t_tmpdir(void);
/* Exit status: 0 if all checks passed; prints a summary. */
int k2t_finish(const char *name);
/* For tests with parts that need shared/: true when present; otherwise prints a
 * skip note (or, under CI=true, counts a failure) and returns false. */
bool k2t_have_shared(const char *part);
/* Skip unless shared/ exists; exits 77 or 1 (CI). */
void k2t_require_shared(void);

#endif

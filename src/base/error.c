#include "base/base.h"

#include <string.h>

#ifndef K2_VERSION
#define K2_VERSION "0.0.0"
#endif

const char *k2_version(void) { return K2_VERSION; }

void k2_error_clear(k2_error *err) {
    if (!err) return;
    err->status = K2_OK;
    err->message[0] = '\0';
}

const char *k2_status_name(k2_status s) {
    static const char *names[] = {
        "OK", "EINVAL", "EIO", "EFORMAT", "ENOMEM", "EUNSUPPORTED", "ENOTFOUND", "ENETWORK",
        "ECANCELLED", "ERANGE", "ETYPE", "EAUTH", "EINTEGRITY", "ETIMEOUT", "EBUSY", "EINTERNAL",
    };
    if ((unsigned)s < K2_ARRAY_LEN(names)) return names[s];
    return "EUNKNOWN";
}

k2_status k2_verr(k2_error *err, k2_status status, const char *fmt, va_list ap) {
    if (err) {
        err->status = status;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
    }
    return status;
}

k2_status k2_err(k2_error *err, k2_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    k2_verr(err, status, fmt, ap);
    va_end(ap);
    return status;
}

void k2_err_prefix(k2_error *err, const char *fmt, ...) {
    if (!err) return;
    char prefix[K2_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t plen = strlen(prefix), mlen = strlen(err->message);
    if (plen >= sizeof err->message) plen = sizeof err->message - 1;
    if (plen + mlen >= sizeof err->message) mlen = sizeof err->message - 1 - plen;
    memmove(err->message + plen, err->message, mlen);
    memcpy(err->message, prefix, plen);
    err->message[plen + mlen] = '\0';
}

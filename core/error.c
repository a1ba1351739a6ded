/*
 * error.c - names of error codes and the helper that fills a cd_error.
 */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>

#include "text.h"

const char *cd_strerror(cd_err code)
{
    switch (code) {
    case CD_OK: return "ok";
    case CD_ENOMEM: return "out of memory";
    case CD_EINVAL: return "invalid argument";
    case CD_EDIM: return "dimension mismatch";
    case CD_EVECTOR: return "invalid vector";
    case CD_ENOTFOUND: return "not found";
    case CD_EEXISTS: return "already exists";
    case CD_ECONFLICT: return "conflict";
    case CD_ENOTVERIFIED: return "model not verified";
    case CD_EUNPROCESSABLE: return "unprocessable";
    case CD_ETOOLARGE: return "too large";
    case CD_EIO: return "i/o error";
    case CD_ECORRUPT: return "corrupt data";
    case CD_EVERSION: return "unsupported version";
    case CD_EBUSY: return "busy";
    case CD_EUNAVAILABLE: return "gallery unavailable";
    case CD_EINTERNAL: return "internal error";
    }
    return "unknown error";
}

cd_err cd__fail(cd_error *err, cd_err code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        int n = vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        /* A message cut short must not end inside a UTF-8 character: it
         * may quote a client's text and goes out in JSON. */
        if (n >= (int)sizeof err->message)
            err->message[cd_utf8_cut(err->message, sizeof err->message - 1)] = '\0';
    }
    return code;
}

void cd_error_clear(cd_error *err)
{
    if (err) {
        err->code = CD_OK;
        err->message[0] = '\0';
    }
}

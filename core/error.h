/*
 * error.h - the one error convention of compatd's core.
 *
 * Every core call that can fail returns a cd_err and, when the caller
 * passes a cd_error, fills it with the same code and a one-line message
 * meant for a human ("item 3: vector has 64 values, model m has dim 128").
 * The message lives in the caller's struct, not in a shared handle,
 * because the engine is called from many threads at once.
 */
#ifndef CD_ERROR_H
#define CD_ERROR_H

#include <stddef.h>

typedef enum cd_err {
    CD_OK = 0,
    CD_ENOMEM,          /* out of memory */
    CD_EINVAL,          /* bad argument: a name, a size, a spec */
    CD_EDIM,            /* vector length differs from the model's dim */
    CD_EVECTOR,         /* NaN, Inf or undecodable vector data */
    CD_ENOTFOUND,       /* unknown model, gallery or item */
    CD_EEXISTS,         /* a model or gallery of that name exists */
    CD_ECONFLICT,       /* the request contradicts stored state */
    CD_ENOTVERIFIED,    /* query model not allowed by the gallery's policy */
    CD_EUNPROCESSABLE,  /* well formed, but impossible to carry out */
    CD_ETOOLARGE,       /* over a configured limit */
    CD_EIO,             /* the file system or SQLite failed */
    CD_ECORRUPT,        /* a stored file is damaged */
    CD_EVERSION,        /* the data directory is newer than this binary */
    CD_EBUSY,           /* not ready yet, try again */
    CD_EUNAVAILABLE,    /* a gallery's index cannot be built; says why */
    CD_EINTERNAL        /* a bug: an invariant did not hold */
} cd_err;

#define CD_ERRMSG_MAX 512

/* Detail of a failed call; caller-owned, usually on the stack. */
typedef struct cd_error {
    cd_err code;                    /* CD_OK when nothing failed */
    char message[CD_ERRMSG_MAX];    /* NUL-terminated, "" when none */
} cd_error;

/* Short, static, lower-case name of a code, e.g. "not found". */
const char *cd_strerror(cd_err code);

/*
 * Sets err (which may be NULL) to code and a printf-style message and
 * returns code, so a failing path can say `return cd__fail(err, ...)`.
 */
cd_err cd__fail(cd_error *err, cd_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Resets err (which may be NULL) to CD_OK with an empty message. */
void cd_error_clear(cd_error *err);

#endif

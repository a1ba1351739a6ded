/*
 * vecfile.h - reading embedding files for bulk import: NumPy .npy
 * (float32, C order, 1-D or 2-D), .fvecs (per vector an int32 dim then
 * dim float32) and raw little-endian float32, plus the one-string-per-line
 * files that carry the vectors' ids and labels.
 *
 * Every reader has a memory form, *_parse (the bytes are the whole file;
 * nothing outside them is touched, so it can be fuzzed), and a path form,
 * *_load, that maps the file (read-only, not copied; it must not be
 * truncated while it is read) and calls the memory form with the path as
 * the name.  A path form returns what its memory form does, and also, with
 * *out zeroed, CD_EIO when the file cannot be opened, examined or mapped,
 * CD_EINVAL when it is not a regular file and CD_ETOOLARGE when it is too
 * large to map.  A file is accepted whole or not at all: truncated data, an
 * unsupported dtype or layout, a non-finite value or a malformed line is an
 * error whose message starts with the file's name ("x.npy: dtype <f8 is
 * not float32 (<f4)").
 */
#ifndef CD_VECFILE_H
#define CD_VECFILE_H

#include <stddef.h>

#include "error.h"

typedef enum cd_vecfile_format {
    CD_VECFILE_NPY = 0,     /* NumPy .npy, format 1.0, 2.0 or 3.0, dtype <f4 */
    CD_VECFILE_FVECS,       /* int32 dim, dim float32; repeated; dims equal */
    CD_VECFILE_RAW          /* float32 only; the dim is given */
} cd_vecfile_format;

/* n vectors of dim floats, row-major.  Caller-owned: cd_vecfile_finish. */
typedef struct cd_vecfile {
    size_t n;       /* number of vectors, >= 1 */
    size_t dim;     /* floats per vector, >= 1 */
    float *data;    /* n * dim finite floats, malloc'd */
} cd_vecfile;

/* Lines of an ids or labels file.  Caller-owned: cd_lines_finish. */
typedef struct cd_lines {
    size_t n;       /* number of lines */
    char **lines;   /* n NUL-terminated strings, pointing into one block */
    char *text;     /* that block, malloc'd */
} cd_lines;

/* cd_lines_read's expect when any number of lines will do. */
#define CD_LINES_ANY ((size_t)-1)

/*
 * Picks the format from path's extension: ".npy", ".fvecs", or ".f32" /
 * ".raw" / ".bin" (raw float32), case-insensitively.  CD_EINVAL, *out
 * unchanged, for anything else.
 */
cd_err cd_vecfile_format_from_path(const char *path, cd_vecfile_format *out,
                                   cd_error *err);

/*
 * Parses the len bytes at buf as a file of format fmt; name (e.g. the
 * path; NULL: "input") starts every error message.  dim is required (>= 1) for
 * CD_VECFILE_RAW and must be 0 or agree with the file for the others.
 *
 * On success *out holds the vectors (release with cd_vecfile_finish).
 * Errors, with *out zeroed: CD_EINVAL for a well-formed file this reader
 * does not take (dtype other than <f4, Fortran order, not 1-D or 2-D, no
 * vectors, dim disagreeing with the given one), CD_ECORRUPT for a damaged
 * or truncated one (bad magic or header, data of the wrong size, unequal
 * .fvecs dims), CD_EVECTOR for a NaN or infinity (the message names the
 * vector and the component), CD_ENOMEM.
 */
cd_err cd_vecfile_parse(const void *buf, size_t len, cd_vecfile_format fmt,
                        size_t dim, const char *name, cd_vecfile *out,
                        cd_error *err);

/* cd_vecfile_parse of the file at path: the path form (see the top). */
cd_err cd_vecfile_load(const char *path, cd_vecfile_format fmt, size_t dim,
                       cd_vecfile *out, cd_error *err);

/* Frees v's data and zeroes it.  Accepts NULL and a zeroed struct. */
void cd_vecfile_finish(cd_vecfile *v);

/*
 * Splits the len bytes at buf into lines: '\n' ends a line, a '\r' before
 * it is dropped, the last line needs no '\n', and a UTF-8 byte order mark
 * at the start is skipped.  Every line must be non-empty, valid UTF-8,
 * without NUL bytes and at most max_len bytes (0: no limit).  When expect
 * is not CD_LINES_ANY the file must have exactly expect lines (one per
 * vector).  name (NULL: "input") starts every error message.
 *
 * On success *out holds the lines (release with cd_lines_finish).
 * Errors, with *out zeroed: CD_EINVAL naming the first bad line by its
 * 1-based number, or the count; CD_ENOMEM.
 */
cd_err cd_lines_parse(const void *buf, size_t len, size_t expect,
                      size_t max_len, const char *name, cd_lines *out,
                      cd_error *err);

/* cd_lines_parse of the file at path: the path form (see the top). */
cd_err cd_lines_load(const char *path, size_t expect, size_t max_len,
                     cd_lines *out, cd_error *err);

/* Frees l's lines and zeroes it.  Accepts NULL and a zeroed struct. */
void cd_lines_finish(cd_lines *l);

#endif

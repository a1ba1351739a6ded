/*
 * fuzz_lines.c - libFuzzer harness for the ids/labels line reader of
 * vecfile.h, from memory.  Besides memory errors it checks that every
 * line it returns is non-empty, NUL-free, valid UTF-8, without '\n' and
 * within the length limit, and that asking for the count it found
 * succeeds while asking for one more fails.
 */
#include <string.h>

#include "harness.h"
#include "text.h"
#include "vecfile.h"

#define MAX_LEN 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cd_lines l;
    cd_error err;
    cd_error_clear(&err);
    cd_err rc = cd_lines_parse(data, size, CD_LINES_ANY, MAX_LEN, "ids.txt", &l, &err);
    if (rc == CD_OK) {
        for (size_t i = 0; i < l.n; i++) {
            size_t len = strlen(l.lines[i]);
            if (len == 0 || len > MAX_LEN || memchr(l.lines[i], '\n', len) ||
                !cd_utf8_valid(l.lines[i], len))
                fuzz_finding("a returned line breaks the contract", &err);
        }
        cd_lines again;
        if (cd_lines_parse(data, size, l.n, MAX_LEN, "ids.txt", &again, &err) != CD_OK ||
            again.n != l.n)
            fuzz_finding("expecting the found count failed", &err);
        cd_lines_finish(&again);
        if (cd_lines_parse(data, size, l.n + 1, MAX_LEN, "ids.txt", &again, &err) != CD_EINVAL)
            fuzz_finding("expecting one line more succeeded", &err);
        cd_lines_finish(&again);
    } else if (l.n || l.lines || l.text || strncmp(err.message, "ids.txt: ", 9) != 0) {
        fuzz_finding("failure left a result or its message does not name the file", &err);
    }
    cd_lines_finish(&l);
    return 0;
}

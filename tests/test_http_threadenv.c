/*
 * test_http_threadenv.c - the daemon sets its own thread policy: started
 * without OMP_WAIT_POLICY or OPENBLAS_THREAD_TIMEOUT (an operator's own
 * unit file), it runs with OMP_WAIT_POLICY=passive and
 * OPENBLAS_THREAD_TIMEOUT=4 in its environment (/proc/<pid>/environ, what
 * the libraries read when they were loaded), keeps a value the operator
 * set, and re-executes itself only when something was missing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "daemon.h"

/* The value of name in process pid's initial environment, or NULL; free() it. */
static char *proc_env(pid_t pid, const char *name)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/environ", (long)pid);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    size_t len = strlen(name);
    for (size_t at = 0; at < n; at += strlen(buf + at) + 1)
        if (strncmp(buf + at, name, len) == 0 && buf[at + len] == '=')
            return strdup(buf + at + len + 1);
    return NULL;
}

int main(void)
{
    static const struct {
        const char *omp, *blas;             /* the operator's; NULL: unset */
        const char *want_omp, *want_blas;   /* the daemon's */
    } cases[] = {
        {NULL, NULL, "passive", "4"},
        {"active", NULL, "active", "4"},
        {NULL, "9", "passive", "9"},
        {"passive", "4", "passive", "4"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        if (cases[c].omp)
            setenv("OMP_WAIT_POLICY", cases[c].omp, 1);
        else
            unsetenv("OMP_WAIT_POLICY");
        if (cases[c].blas)
            setenv("OPENBLAS_THREAD_TIMEOUT", cases[c].blas, 1);
        else
            unsetenv("OPENBLAS_THREAD_TIMEOUT");
        td_daemon *d = td_daemon_create();
        REQUIRE(d);
        REQUIRE(td_daemon_start(d, NULL));
        pid_t pid = td_daemon_pid(d);
        char *omp = proc_env(pid, "OMP_WAIT_POLICY");
        char *blas = proc_env(pid, "OPENBLAS_THREAD_TIMEOUT");
        char *mark = proc_env(pid, "COMPATD_THREAD_POLICY_SET");
        CHECK_STREQ(omp, cases[c].want_omp);
        CHECK_STREQ(blas, cases[c].want_blas);
        /* /proc/<pid>/environ is what the last exec passed: the marker
         * there says the daemon re-executed itself, which it must do
         * exactly when a variable was missing. */
        if (!cases[c].omp || !cases[c].blas)
            CHECK_STREQ(mark, "1");
        else
            CHECK(mark == NULL);
        free(omp);
        free(blas);
        free(mark);
        CHECK_EQ(td_daemon_stop(d), 0);
        td_daemon_destroy(d);
    }
    return check_exit();
}

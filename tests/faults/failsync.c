/*
 * A disk that starts failing its syncs, for a process preloaded with this library
 * (LD_PRELOAD): once the file `$FRESHET_FAILSYNC_WHEN.<pid>` exists, fsync and fdatasync fail
 * with EIO, as they do when a disk or its controller reports a write error. Built and used by
 * the replication tests (tests/it/replication.rs).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int failing(void) {
    const char *when = getenv("FRESHET_FAILSYNC_WHEN");
    char path[4096];
    if (when == NULL || snprintf(path, sizeof path, "%s.%d", when, (int)getpid()) >= (int)sizeof path) {
        return 0;
    }
    return access(path, F_OK) == 0;
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (failing()) {
        errno = EIO;
        return -1;
    }
    if (real == NULL) {
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    }
    return real(fd);
}

int fsync(int fd) {
    static int (*real)(int);
    if (failing()) {
        errno = EIO;
        return -1;
    }
    if (real == NULL) {
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    }
    return real(fd);
}

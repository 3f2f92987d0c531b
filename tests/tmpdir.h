/* tmpdir.h - a per-test scratch folder under /tmp, files written from byte buffers, and
 * cleanup. Header-only, for tests. */
#ifndef DFA_TESTS_TMPDIR_H
#define DFA_TESTS_TMPDIR_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct test_tmpdir {
    char path[64];
} test_tmpdir;

/* Creates /tmp/dfa_<tag>_XXXXXX; returns 0 on success. */
static inline int tmpdir_make(test_tmpdir *t, const char *tag) {
    snprintf(t->path, sizeof t->path, "/tmp/dfa_%s_XXXXXX", tag);
    if (!mkdtemp(t->path)) {
        perror("mkdtemp");
        return -1;
    }
    return 0;
}

/* buf <- "<dir>/<name>" */
static inline const char *tmpdir_file(const test_tmpdir *t, const char *name, char *buf, size_t n) {
    int k = snprintf(buf, n, "%s/%s", t->path, name);
    return k > 0 && (size_t)k < n ? buf : NULL;
}

/* Write `len` bytes to "<dir>/<name>"; returns the path in buf, or NULL on failure. */
static inline const char *tmpdir_write(const test_tmpdir *t, const char *name, const void *data, size_t len,
                                       char *buf, size_t n) {
    tmpdir_file(t, name, buf, n);
    FILE *f = fopen(buf, "wb");
    if (!f) return NULL;
    size_t w = len ? fwrite(data, 1, len, f) : 0;
    if (fclose(f) != 0 || w != len) return NULL;
    return buf;
}

/* Remove a folder tree (test scratch folders only; no symlink following). */
static inline int tmpdir_rm_tree_(const char *path, int depth) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return -1;
    if (S_ISDIR(sb.st_mode) && depth < 16) {
        DIR *d = opendir(path);
        if (!d) return -1;
        struct dirent *ent;
        char sub[1024];
        while ((ent = readdir(d)) != NULL) {
            if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0) continue;
            int k = snprintf(sub, sizeof sub, "%s/%s", path, ent->d_name);
            if (k > 0 && (size_t)k < sizeof sub) tmpdir_rm_tree_(sub, depth + 1);
        }
        closedir(d);
        return rmdir(path);
    }
    return unlink(path);
}

static inline void tmpdir_remove(test_tmpdir *t) {
    if (t->path[0] && tmpdir_rm_tree_(t->path, 0) != 0) fprintf(stderr, "could not remove %s\n", t->path);
}

#endif

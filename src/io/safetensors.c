/* safetensors.c - open (mmap + validated header), multi-file index, lookup, load with
 * dtype conversion to host or device memory. Header parsing: st_header.c; writer: st_write.c. */
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cuda_rt.h"
#include "io/json.h"
#include "io/st_internal.h"

/* Host staging for converted chunks on their way to the device (and for misaligned sources). */
#define ST_STAGING_BYTES ((size_t)8 << 20)

typedef struct st_file {
    char *path;
    const uint8_t *map;
    size_t size;
    uint64_t data_start;
} st_file;

struct dfa_safetensors {
    char *path; /* what was opened: a file, an index, or the file/index picked in a folder */
    st_file *files;
    int n_files;
    dfa_st_tensor *t; /* all files' tensors, file by file in header order */
    int n;
    const dfa_st_tensor **by_name; /* sorted by name, for lookups */
    char **meta;                   /* first file's __metadata__, key/value pairs */
    int n_meta;
};

static char *dup_str(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

static char *join_path(const char *dir, size_t dir_len, const char *name) {
    size_t n = strlen(name);
    char *p = malloc(dir_len + 1 + n + 1);
    if (!p) return NULL;
    memcpy(p, dir, dir_len);
    p[dir_len] = '/';
    memcpy(p + dir_len + 1, name, n + 1);
    return p;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int is_regular(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* mmap one file and parse its header into tb. */
static dfa_status map_file(st_file *f, const char *path, st_table *tb, dfa_error *err) {
    memset(f, 0, sizeof *f);
    memset(tb, 0, sizeof *tb);
    f->path = dup_str(path);
    if (!f->path) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) DFA_FAIL(err, errno == ENOENT ? DFA_ERR_NOT_FOUND : DFA_ERR_IO, "%s: cannot open: %s", path,
                         strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        DFA_FAIL(err, DFA_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size < 8) {
        close(fd);
        DFA_FAIL(err, DFA_ERR_FORMAT, "%s: file is %lld bytes, too short for a safetensors header (8-byte length + JSON)",
                 path, (long long)sb.st_size);
    }
    void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) DFA_FAIL(err, DFA_ERR_IO, "%s: mmap of %lld bytes failed: %s", path, (long long)sb.st_size, strerror(e));
    f->map = m;
    f->size = (size_t)sb.st_size;
    DFA_TRY(st_parse(f->map, f->size, f->size, path, tb, err));
    f->data_start = tb->data_start;
    return DFA_OK;
}

void dfa_st_close(dfa_safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->n_files; i++) {
        if (st->files[i].map) munmap((void *)st->files[i].map, st->files[i].size);
        free(st->files[i].path);
    }
    free(st->files);
    for (int i = 0; i < st->n; i++) free((char *)st->t[i].name);
    free(st->t);
    free(st->by_name);
    for (int i = 0; i < 2 * st->n_meta; i++) free(st->meta[i]);
    free(st->meta);
    free(st->path);
    free(st);
}

/* Append a parsed table (file index fi) to st, taking its names. */
static dfa_status absorb(dfa_safetensors *st, st_table *tb, int fi, dfa_error *err) {
    dfa_st_tensor *t = realloc(st->t, sizeof *t * (size_t)(st->n + tb->n + 1));
    if (!t) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory for %d tensors", st->files[fi].path, st->n + tb->n);
    st->t = t;
    for (int i = 0; i < tb->n; i++) {
        st->t[st->n] = tb->t[i];
        st->t[st->n].file = fi;
        tb->t[i].name = NULL;
        st->n++;
    }
    if (fi == 0) {
        st->meta = tb->meta;
        st->n_meta = tb->n_meta;
        tb->meta = NULL;
        tb->n_meta = 0;
    }
    return DFA_OK;
}

static int cmp_by_name(const void *a, const void *b) {
    return strcmp((*(const dfa_st_tensor *const *)a)->name, (*(const dfa_st_tensor *const *)b)->name);
}

static dfa_status build_lookup(dfa_safetensors *st, dfa_error *err) {
    st->by_name = malloc(sizeof *st->by_name * (size_t)(st->n ? st->n : 1));
    if (!st->by_name) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory", st->path);
    for (int i = 0; i < st->n; i++) st->by_name[i] = &st->t[i];
    qsort(st->by_name, (size_t)st->n, sizeof *st->by_name, cmp_by_name);
    for (int i = 1; i < st->n; i++)
        if (strcmp(st->by_name[i - 1]->name, st->by_name[i]->name) == 0)
            DFA_FAIL(err, DFA_ERR_FORMAT, "%s: tensor '%s' is in both %s and %s", st->path, st->by_name[i]->name,
                     st->files[st->by_name[i - 1]->file].path, st->files[st->by_name[i]->file].path);
    return DFA_OK;
}

static dfa_status open_files(dfa_safetensors *st, char **paths, int n, dfa_error *err) {
    st->files = calloc((size_t)n, sizeof *st->files);
    if (!st->files) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory", st->path);
    for (int i = 0; i < n; i++) {
        st_table tb;
        st->n_files = i + 1;
        dfa_status s = map_file(&st->files[i], paths[i], &tb, err);
        if (s == DFA_OK) s = absorb(st, &tb, i, err);
        st_table_free(&tb);
        if (s != DFA_OK) return s;
    }
    return build_lookup(st, err);
}

/* Shard names from the index: unique, in order of first appearance, relative to the index's folder. */
static dfa_status index_shards(const char *index, const cJSON *wm, char ***out, int *n_out, dfa_error *err) {
    int cap = cJSON_GetArraySize(wm), n = 0;
    const char **names = calloc((size_t)(cap ? cap : 1), sizeof *names);
    if (!names) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory", index);
    dfa_status s = DFA_OK;
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e) || !e->valuestring || !e->valuestring[0]) {
            s = DFA_SET(err, DFA_ERR_FORMAT, "%s: weight_map['%s'] must be a shard file name", index, e->string);
            break;
        }
        const char *v = e->valuestring;
        if (v[0] == '/' || strstr(v, "..")) {
            s = DFA_SET(err, DFA_ERR_FORMAT, "%s: weight_map['%s'] = '%s' must be a file inside the index's folder",
                        index, e->string, v);
            break;
        }
        int seen = 0;
        for (int i = n - 1; i >= 0 && !seen; i--) seen = strcmp(names[i], v) == 0;
        if (!seen) names[n++] = v;
    }
    if (s == DFA_OK && n == 0) s = DFA_SET(err, DFA_ERR_FORMAT, "%s: weight_map names no tensors", index);
    if (s != DFA_OK) {
        free(names);
        return s;
    }
    const char *slash = strrchr(index, '/');
    size_t dl = slash ? (size_t)(slash - index) : 1;
    char **paths = calloc((size_t)n, sizeof *paths);
    for (int i = 0; paths && i < n; i++) {
        paths[i] = join_path(slash ? index : ".", dl, names[i]);
        if (!paths[i]) s = DFA_SET(err, DFA_ERR_OOM, "%s: out of memory", index);
    }
    free(names);
    if (!paths) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory", index);
    *out = paths;
    *n_out = n;
    return s;
}

static dfa_status open_index(dfa_safetensors *st, const char *index, dfa_error *err) {
    cJSON *root = NULL;
    DFA_TRY(dfa_json_read_file(index, &root, err));
    dfa_status s = DFA_OK;
    char **paths = NULL;
    int n = 0;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(wm))
        s = DFA_SET(err, DFA_ERR_FORMAT, "%s: expected an object with a \"weight_map\" object", index);
    if (s == DFA_OK) s = index_shards(index, wm, &paths, &n, err);
    if (s == DFA_OK) s = open_files(st, paths, n, err);
    /* every tensor the map names must be in the shard it names */
    const cJSON *e;
    const char *slash = strrchr(index, '/');
    size_t pre = slash ? (size_t)(slash - index) + 1 : 2; /* shard paths are "<folder>/<name>" */
    if (s == DFA_OK)
        cJSON_ArrayForEach(e, wm) {
            const dfa_st_tensor *t = dfa_st_find(st, e->string);
            const char *where = t ? st->files[t->file].path + pre : NULL;
            if (!t) {
                s = DFA_SET(err, DFA_ERR_NOT_FOUND, "%s: tensor '%s' is mapped to %s, which does not hold it", index,
                            e->string, e->valuestring);
                break;
            }
            if (strcmp(where, e->valuestring) != 0) {
                s = DFA_SET(err, DFA_ERR_FORMAT, "%s: tensor '%s' is mapped to %s but is in %s", index, e->string,
                            e->valuestring, st->files[t->file].path);
                break;
            }
        }
    for (int i = 0; paths && i < n; i++) free(paths[i]);
    free(paths);
    cJSON_Delete(root);
    return s;
}

/* In a folder: exactly one of the known single-file / index layouts. */
static dfa_status pick_in_dir(const char *dir, char **out, dfa_error *err) {
    static const char *const cands[] = {"diffusion_pytorch_model.safetensors",
                                        "diffusion_pytorch_model.safetensors.index.json", "model.safetensors",
                                        "model.safetensors.index.json"};
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dl--;
    char *found = NULL;
    for (int i = 0; i < 4; i++) {
        char *p = join_path(dir, dl, cands[i]);
        if (!p) {
            free(found);
            DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory", dir);
        }
        if (!is_regular(p)) {
            free(p);
            continue;
        }
        if (found) {
            dfa_status s = DFA_SET(err, DFA_ERR_FORMAT, "%s: holds both %s and %s; open one of them", dir, found, p);
            free(found);
            free(p);
            return s;
        }
        found = p;
    }
    if (!found)
        DFA_FAIL(err, DFA_ERR_NOT_FOUND,
                 "%s: no diffusion_pytorch_model.safetensors[.index.json] or model.safetensors[.index.json] in this folder",
                 dir);
    *out = found;
    return DFA_OK;
}

dfa_status dfa_st_open(dfa_safetensors **out, const char *path, dfa_error *err) {
    *out = NULL;
    if (!path || !path[0]) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "dfa_st_open: no path given");
    struct stat sb;
    if (stat(path, &sb) != 0)
        DFA_FAIL(err, errno == ENOENT ? DFA_ERR_NOT_FOUND : DFA_ERR_IO, "%s: %s", path, strerror(errno));
    dfa_safetensors *st = calloc(1, sizeof *st);
    if (!st) DFA_FAIL(err, DFA_ERR_OOM, "%s: out of memory", path);
    dfa_status s = S_ISDIR(sb.st_mode) ? pick_in_dir(path, &st->path, err) : DFA_OK;
    if (s == DFA_OK && !st->path && !(st->path = dup_str(path))) s = DFA_SET(err, DFA_ERR_OOM, "%s: out of memory", path);
    if (s == DFA_OK) {
        if (ends_with(st->path, ".index.json")) {
            s = open_index(st, st->path, err);
        } else {
            char *one = st->path;
            s = open_files(st, &one, 1, err);
        }
    }
    if (s != DFA_OK) {
        dfa_st_close(st);
        return s;
    }
    *out = st;
    return DFA_OK;
}

int dfa_st_count(const dfa_safetensors *st) { return st ? st->n : 0; }

const dfa_st_tensor *dfa_st_at(const dfa_safetensors *st, int i) {
    return st && i >= 0 && i < st->n ? &st->t[i] : NULL;
}

const dfa_st_tensor *dfa_st_find(const dfa_safetensors *st, const char *name) {
    if (!st || !name || !st->by_name) return NULL;
    int lo = 0, hi = st->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, st->by_name[mid]->name);
        if (c == 0) return st->by_name[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

const char *dfa_st_file_path(const dfa_safetensors *st, int file) {
    return st && file >= 0 && file < st->n_files ? st->files[file].path : NULL;
}

int dfa_st_file_count(const dfa_safetensors *st) { return st ? st->n_files : 0; }

const char *dfa_st_path(const dfa_safetensors *st) { return st ? st->path : NULL; }

const void *dfa_st_data(const dfa_safetensors *st, const dfa_st_tensor *t) {
    if (!st || !t || t->file < 0 || t->file >= st->n_files) return NULL;
    const st_file *f = &st->files[t->file];
    return f->map + f->data_start + t->begin;
}

int dfa_st_meta_count(const dfa_safetensors *st) { return st ? st->n_meta : 0; }

void dfa_st_meta_at(const dfa_safetensors *st, int i, const char **key, const char **value) {
    int ok = st && i >= 0 && i < st->n_meta;
    if (key) *key = ok ? st->meta[2 * i] : NULL;
    if (value) *value = ok ? st->meta[2 * i + 1] : NULL;
}

static int can_convert(dfa_dtype from, dfa_dtype to) {
    if (from == to) return 1;
    if (from == DFA_F8_E4M3 || from == DFA_F8_E5M2) return 0;
    return to == DFA_F32 || to == DFA_F64 || to == DFA_F16 || to == DFA_BF16;
}

/* Convert n elements src -> dst through bounded staging: `raw` (an aligned copy of the source,
 * for sources not aligned to their element size) and/or `out` (converted values on their way to
 * the device). */
static dfa_status convert_chunked(const dfa_st_tensor *t, const char *file, const uint8_t *src, dfa_dtype dtype,
                                  void *dst, dfa_device dev, struct dfa_cuda *cu, size_t numel, dfa_error *err) {
    size_t ss = dfa_dtype_size(t->dtype), ds = dfa_dtype_size(dtype);
    int need_raw = ((uintptr_t)src % ss) != 0, need_out = dev == DFA_DEV_CUDA;
    if (!need_raw && !need_out) {
        dfa_status s = dfa_convert(dst, dtype, src, t->dtype, numel, err);
        if (s != DFA_OK) dfa_error_wrap(err, "tensor '%s' in %s", t->name, file);
        return s;
    }
    size_t chunk = ST_STAGING_BYTES / (ss + ds);
    if (chunk > numel) chunk = numel;
    size_t raw_bytes = need_raw ? (chunk * ss + 63) / 64 * 64 : 0;
    uint8_t *stage = malloc(raw_bytes + (need_out ? chunk * ds : 0) + 1);
    if (!stage)
        DFA_FAIL(err, DFA_ERR_OOM, "tensor '%s' in %s: cannot allocate a staging buffer", t->name, file);
    uint8_t *out = stage + raw_bytes;
    dfa_status s = DFA_OK;
    for (size_t off = 0; off < numel && s == DFA_OK; off += chunk) {
        size_t m = numel - off < chunk ? numel - off : chunk;
        const void *from = src + off * ss;
        if (need_raw) {
            memcpy(stage, from, m * ss);
            from = stage;
        }
        void *to = need_out ? (void *)out : (void *)((uint8_t *)dst + off * ds);
        s = dfa_convert(to, dtype, from, t->dtype, m, err);
        if (s == DFA_OK && need_out) s = dfa_cuda_h2d(cu, (uint8_t *)dst + off * ds, out, m * ds, err);
    }
    free(stage);
    if (s != DFA_OK) dfa_error_wrap(err, "tensor '%s' in %s", t->name, file);
    return s;
}

dfa_status dfa_st_load(const dfa_safetensors *st, const char *name, dfa_dtype dtype, int ndim,
                       const int64_t *shape, void *dst, dfa_device dev, struct dfa_cuda *cu,
                       dfa_error *err) {
    if (!st || !name) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "dfa_st_load: no checkpoint or no tensor name");
    const dfa_st_tensor *t = dfa_st_find(st, name);
    if (!t) {
        if (st->n_files > 1)
            DFA_FAIL(err, DFA_ERR_NOT_FOUND, "tensor '%s' not found in %s (%d shards)", name, st->path, st->n_files);
        DFA_FAIL(err, DFA_ERR_NOT_FOUND, "tensor '%s' not found in %s", name, st->path);
    }
    const char *file = st->files[t->file].path;
    if (ndim > DFA_MAX_DIMS || (ndim > 0 && !shape))
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "tensor '%s' in %s: bad expected shape (rank %d)", name, file, ndim);
    if (ndim >= 0 && (ndim != t->ndim || (ndim > 0 && memcmp(shape, t->shape, sizeof *shape * (size_t)ndim) != 0))) {
        char a[160], b[160];
        DFA_FAIL(err, DFA_ERR_SHAPE, "tensor '%s' in %s: expected %s, got %s", name, file,
                 dfa_shape_str(ndim, shape, a, sizeof a), dfa_shape_str(t->ndim, t->shape, b, sizeof b));
    }
    if ((unsigned)dtype >= DFA_DTYPE_COUNT)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "tensor '%s' in %s: bad target dtype %d", name, file, (int)dtype);
    if (!can_convert(t->dtype, dtype))
        DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "tensor '%s' in %s: cannot convert %s to %s", name, file,
                 dfa_dtype_name(t->dtype), dfa_dtype_name(dtype));
    if (dev == DFA_DEV_CUDA && !cu)
        DFA_FAIL(err, DFA_ERR_INVALID_ARG, "tensor '%s' in %s: loading to the device needs a CUDA handle", name, file);
    size_t numel = (size_t)((t->end - t->begin) / dfa_dtype_size(t->dtype));
    if (numel == 0) return DFA_OK;
    if (!dst) DFA_FAIL(err, DFA_ERR_INVALID_ARG, "tensor '%s' in %s: no destination", name, file);
    const uint8_t *src = dfa_st_data(st, t);
    if (dtype == t->dtype) {
        size_t bytes = (size_t)(t->end - t->begin);
        if (dev == DFA_DEV_CPU) {
            memcpy(dst, src, bytes);
            return DFA_OK;
        }
        dfa_status s = dfa_cuda_h2d(cu, dst, src, bytes, err);
        if (s != DFA_OK) dfa_error_wrap(err, "tensor '%s' in %s", name, file);
        return s;
    }
    return convert_chunked(t, file, src, dtype, dst, dev, cu, numel, err);
}

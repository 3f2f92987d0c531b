/* safetensors.h - read (mmap, fully validated header, multi-file index) and write
 * safetensors checkpoints. A real checkpoint is tens of GB: nothing reads a whole file;
 * tensor data is used in place from the mapping or converted while copied out.
 * Every error names the file, and the tensor where there is one. */
#ifndef DFA_IO_SAFETENSORS_H
#define DFA_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"
#include "dfa.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dfa_st_tensor {
    const char *name;
    dfa_dtype dtype;
    int ndim;
    int64_t shape[DFA_MAX_DIMS];
    uint64_t begin, end; /* byte range inside the file's data section */
    int file;            /* index of the file that holds it (multi-file checkpoints) */
} dfa_st_tensor;

typedef struct dfa_safetensors dfa_safetensors;

/* Open `path`: a .safetensors file, a *.safetensors.index.json (every shard it names is
 * opened and checked: each tensor the "weight_map" names must be in the shard it names,
 * no tensor may be in two shards), or a directory holding exactly one of those layouts
 * (diffusers: diffusion_pytorch_model.safetensors[.index.json], transformers:
 * model.safetensors[.index.json]). Header checks: length <= 100,000,000 bytes and inside
 * the file, UTF-8 JSON object, known dtypes, rank <= DFA_MAX_DIMS, non-negative integer
 * dims and offsets, begin <= end <= data section size, end - begin == numel * dtype size,
 * non-empty ranges disjoint, names unique, __metadata__ a string->string map. Gaps
 * between ranges are allowed. */
dfa_status dfa_st_open(dfa_safetensors **out, const char *path, dfa_error *err);
void dfa_st_close(dfa_safetensors *st);

int dfa_st_count(const dfa_safetensors *st);
const dfa_st_tensor *dfa_st_at(const dfa_safetensors *st, int i); /* header order of the file(s) */
const dfa_st_tensor *dfa_st_find(const dfa_safetensors *st, const char *name);
const char *dfa_st_file_path(const dfa_safetensors *st, int file);
int dfa_st_file_count(const dfa_safetensors *st);
/* The file or index that was opened (for a folder: the one picked inside it). */
const char *dfa_st_path(const dfa_safetensors *st);
/* Pointer to the tensor's bytes inside the mapping (valid until dfa_st_close). */
const void *dfa_st_data(const dfa_safetensors *st, const dfa_st_tensor *t);

/* __metadata__ of the first file: count, and key/value by index. */
int dfa_st_meta_count(const dfa_safetensors *st);
void dfa_st_meta_at(const dfa_safetensors *st, int i, const char **key, const char **value);

/* Copy tensor `name` into dst (host memory, or device memory when dev is DFA_DEV_CUDA and
 * cu is not NULL), converted to `dtype`. If ndim >= 0 the tensor must have exactly that
 * shape; the error then says "tensor 'x' in FILE: expected [a, b], got [c, d]". A missing
 * tensor gives DFA_ERR_NOT_FOUND naming the tensor and the file(s). */
struct dfa_cuda;
dfa_status dfa_st_load(const dfa_safetensors *st, const char *name, dfa_dtype dtype, int ndim,
                       const int64_t *shape, void *dst, dfa_device dev, struct dfa_cuda *cu,
                       dfa_error *err);

/* Parse and validate a header held in memory: buf is the whole file image's first
 * `len` bytes (8-byte length + JSON), file_size the size of the whole file. Used by
 * dfa_st_open and by the fuzz target. On success *out_tensors and *out_n own the parsed table
 * (free with dfa_st_free_table). */
dfa_status dfa_st_parse_header(const uint8_t *buf, size_t len, uint64_t file_size, const char *file_name,
                               dfa_st_tensor **out_tensors, int *out_n, dfa_error *err);
void dfa_st_free_table(dfa_st_tensor *tensors, int n);

/* Writer. The header lists tensors in the order given; the data section starts 8-byte
 * aligned (header padded with spaces) and holds the tensors contiguously, placed by
 * decreasing dtype size (stable), so that every tensor is aligned to its element size.
 * Names must be unique UTF-8. Written to PATH.tmp, then renamed. */
typedef struct dfa_st_item {
    const char *name;
    dfa_dtype dtype;
    int ndim;
    const int64_t *shape;
    const void *data; /* host memory, numel * dtype size bytes */
} dfa_st_item;

dfa_status dfa_st_write(const char *path, const dfa_st_item *items, int n, const char *const *meta_keys,
                        const char *const *meta_values, int n_meta, dfa_error *err);

#ifdef __cplusplus
}
#endif
#endif

/* tensor.h - dtype, device, shape; a tensor is a view on memory owned elsewhere
 * (an arena, a weight block or an mmapped file). */
#ifndef DFA_CORE_TENSOR_H
#define DFA_CORE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DFA_MAX_DIMS 8

/* Every dtype a safetensors file may name. Compute happens in F32/F16/BF16. */
typedef enum dfa_dtype {
    DFA_F32 = 0,
    DFA_F16,
    DFA_BF16,
    DFA_F64,
    DFA_I64,
    DFA_I32,
    DFA_I16,
    DFA_I8,
    DFA_U8,
    DFA_U16,
    DFA_U32,
    DFA_U64,
    DFA_BOOL,
    DFA_F8_E4M3,
    DFA_F8_E5M2,
    DFA_DTYPE_COUNT
} dfa_dtype;

typedef enum dfa_device {
    DFA_DEV_CPU = 0,
    DFA_DEV_CUDA = 1
} dfa_device;

typedef struct dfa_tensor {
    dfa_dtype dtype;
    dfa_device dev;
    int ndim;
    int64_t shape[DFA_MAX_DIMS];
    void *data;
} dfa_tensor;

size_t dfa_dtype_size(dfa_dtype t);
/* Name as safetensors spells it ("F32", "BF16", ...). */
const char *dfa_dtype_name(dfa_dtype t);
/* Parse a safetensors dtype name; returns 0 on success. */
int dfa_dtype_parse(const char *name, dfa_dtype *out);
int dfa_dtype_is_float(dfa_dtype t);

int64_t dfa_tensor_numel(const dfa_tensor *t);
size_t dfa_tensor_nbytes(const dfa_tensor *t);
/* Fill a descriptor (no allocation). Fails on ndim out of range or negative dims. */
dfa_status dfa_tensor_init(dfa_tensor *t, dfa_dtype dtype, dfa_device dev, int ndim,
                           const int64_t *shape, void *data, dfa_error *err);
/* Same dtype and shape. */
int dfa_tensor_same_shape(const dfa_tensor *a, const dfa_tensor *b);
/* "[2, 3, 4]" into buf */
const char *dfa_shape_str(int ndim, const int64_t *shape, char *buf, size_t len);

/* Scalar conversions (round-to-nearest-even for narrowing). */
float dfa_f16_to_f32(uint16_t h);
uint16_t dfa_f32_to_f16(float f);
float dfa_bf16_to_f32(uint16_t h);
uint16_t dfa_f32_to_bf16(float f);

/* Convert n elements between float dtypes on the host (F32, F16, BF16, F64).
 * Integer sources are converted to float destinations too. */
dfa_status dfa_convert(void *dst, dfa_dtype dst_t, const void *src, dfa_dtype src_t, size_t n,
                       dfa_error *err);

#ifdef __cplusplus
}
#endif

#endif

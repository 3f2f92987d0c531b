/* cuda_stub.c - built when nvcc is absent: every CUDA entry point says so. */
#include "core/cuda_rt.h"

#define NO_CUDA(err) DFA_FAIL(err, DFA_ERR_UNSUPPORTED, "this build of dfa has no CUDA support")

dfa_status dfa_cuda_init(dfa_cuda **out, int device, dfa_error *err) {
    (void)device;
    *out = NULL;
    NO_CUDA(err);
}
void dfa_cuda_free(dfa_cuda *cu) { (void)cu; }
const char *dfa_cuda_device_name(const dfa_cuda *cu) { (void)cu; return "none"; }
int dfa_cuda_sm_count(const dfa_cuda *cu) { (void)cu; return 0; }
void *dfa_cuda_stream(const dfa_cuda *cu) { (void)cu; return 0; }
dfa_status dfa_cuda_malloc(dfa_cuda *cu, void **ptr, size_t bytes, dfa_error *err) {
    (void)cu; (void)bytes; *ptr = 0; NO_CUDA(err);
}
void dfa_cuda_dealloc(dfa_cuda *cu, void *ptr) { (void)cu; (void)ptr; }
dfa_status dfa_cuda_h2d(dfa_cuda *cu, void *d, const void *s, size_t n, dfa_error *err) {
    (void)cu; (void)d; (void)s; (void)n; NO_CUDA(err);
}
dfa_status dfa_cuda_d2h(dfa_cuda *cu, void *d, const void *s, size_t n, dfa_error *err) {
    (void)cu; (void)d; (void)s; (void)n; NO_CUDA(err);
}
dfa_status dfa_cuda_d2d(dfa_cuda *cu, void *d, const void *s, size_t n, dfa_error *err) {
    (void)cu; (void)d; (void)s; (void)n; NO_CUDA(err);
}
dfa_status dfa_cuda_memset(dfa_cuda *cu, void *d, int v, size_t n, dfa_error *err) {
    (void)cu; (void)d; (void)v; (void)n; NO_CUDA(err);
}
dfa_status dfa_cuda_sync(dfa_cuda *cu, dfa_error *err) { (void)cu; NO_CUDA(err); }
dfa_status dfa_cuda_span_begin(dfa_cuda *cu, dfa_error *err) { (void)cu; NO_CUDA(err); }
dfa_status dfa_cuda_span_end(dfa_cuda *cu, double *acc, dfa_error *err) { (void)cu; (void)acc; NO_CUDA(err); }
dfa_status dfa_cuda_spans_collect(dfa_cuda *cu, dfa_error *err) { (void)cu; (void)err; return DFA_OK; }
void dfa_cuda_spans_drop(dfa_cuda *cu) { (void)cu; }
dfa_status dfa_cuda_capture_begin(dfa_cuda *cu, dfa_error *err) { (void)cu; NO_CUDA(err); }
dfa_status dfa_cuda_capture_end(dfa_cuda *cu, dfa_cuda_graph **out, dfa_error *err) { (void)cu; *out = 0; NO_CUDA(err); }
void dfa_cuda_capture_abort(dfa_cuda *cu) { (void)cu; }
dfa_status dfa_cuda_graph_launch(dfa_cuda *cu, dfa_cuda_graph *g, dfa_error *err) { (void)cu; (void)g; NO_CUDA(err); }
void dfa_cuda_graph_free(dfa_cuda_graph *g) { (void)g; }
dfa_status dfa_cuda_mem_info(dfa_cuda *cu, size_t *f, size_t *t, dfa_error *err) {
    (void)cu; *f = 0; *t = 0; NO_CUDA(err);
}

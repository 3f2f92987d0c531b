/* attn_trace.h - the wgmma kernel's trace region (trace builds only: -DDFA_ACU_TRACE,
 * bench/attn_trace.sh; the library is never built with it). Plain C: the shim reads it too. */
#ifndef DFA_ATTN_CUDA_TRACE_H
#define DFA_ATTN_CUDA_TRACE_H
#ifdef DFA_ACU_TRACE
/* Trace builds (bench/attn_trace.sh; never the library's): the wgmma kernel writes clock64 stamps
 * per CTA (the first DFA_ACU_TRACE_CTAS), role (0 producer, 1 storer, 2 + consumer warpgroup) and
 * item (the role's t-th item; the last slot holds the CTA's start / end clock and globaltimer),
 * DFA_ACU_TRACE_EV words each, into a region after the plan's work counter. */
#define DFA_ACU_TRACE_CTAS 132
#define DFA_ACU_TRACE_ROLES 5
#define DFA_ACU_TRACE_ITEMS 64
#define DFA_ACU_TRACE_EV 12
#define DFA_ACU_TRACE_BYTES \
    ((size_t)DFA_ACU_TRACE_CTAS * DFA_ACU_TRACE_ROLES * DFA_ACU_TRACE_ITEMS * DFA_ACU_TRACE_EV * 8)
#endif
#endif

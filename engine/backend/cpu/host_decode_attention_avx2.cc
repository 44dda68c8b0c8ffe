// host_decode_attention's AVX2 + FMA + F16C copy (this file alone is compiled with -mavx2 -mfma -mf16c; the
// dispatcher in host_decode_attention.cc calls it only on CPUs that have them).
#if defined(__x86_64__) && defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)
#define ZI_HDA_NS avx2
#include "engine/backend/cpu/host_decode_attention_impl.h"
#endif

/* cublas_api.h (CUDA simulator): see cublas_v2.h */
#include "cublas_v2.h"

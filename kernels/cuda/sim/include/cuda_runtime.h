/* cuda_runtime.h (CUDA simulator): the runtime API and the device language, see qasim.h */
#ifndef QASIM_CUDA_RUNTIME_H
#define QASIM_CUDA_RUNTIME_H
#include "qasim.h"
#endif

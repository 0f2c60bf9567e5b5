/* device_launch_parameters.h (CUDA simulator): part of cuda_runtime.h here */
#include "cuda_runtime.h"

# bench_load_7b: load a Mistral-7B-shaped checkpoint (mmap, zero copy) and report peak RSS against the
# weight bytes, with a naive read-into-malloc loader as the peer (--quant nf4: an NF4 load's peak against the
# parameters, bench/nf4_7b.sh). Run by hand: bench/load_7b.sh BUILD_DIR.
add_executable(bench_load_7b ${CMAKE_CURRENT_SOURCE_DIR}/load_7b.c)
target_link_libraries(bench_load_7b PRIVATE qa_model qa_io qa_common)

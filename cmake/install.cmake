# install.cmake — `cmake --install build --prefix P` and `cpack -G DEB` (docs/install.md).
#   P/bin/qalign
#   P/share/qalign/configs/      example configs, prompt templates (configs/templates), sweep grids (configs/sweeps)
#   P/share/qalign/slurm/        batch-script templates
#   P/share/qalign/modulefiles/qalign/<version>   an environment-modules / Lmod modulefile for this prefix
#   P/share/doc/qalign/          README and docs/
#   P/share/man/man1/qalign.1
# The binary finds P/share/qalign from its own path (common/qa_datadir.h), so the prefix can move.
include(GNUInstallDirs)

install(TARGETS qalign RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/configs/ DESTINATION ${CMAKE_INSTALL_DATADIR}/qalign/configs)
install(DIRECTORY ${CMAKE_SOURCE_DIR}/slurm/ DESTINATION ${CMAKE_INSTALL_DATADIR}/qalign/slurm USE_SOURCE_PERMISSIONS)
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR})
# qalign.1 is made from the binary's own help texts (every command, every option): it cannot drift
add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/qalign.1
                   COMMAND sh ${CMAKE_SOURCE_DIR}/cmake/gen-manpage.sh $<TARGET_FILE:qalign> ${PROJECT_VERSION}
                           > ${CMAKE_BINARY_DIR}/qalign.1
                   DEPENDS qalign ${CMAKE_SOURCE_DIR}/cmake/gen-manpage.sh VERBATIM)
add_custom_target(qalign_manpage ALL DEPENDS ${CMAKE_BINARY_DIR}/qalign.1)
install(FILES ${CMAKE_BINARY_DIR}/qalign.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
# The modulefile names the prefix it was installed under (also the one `--prefix` gives at install time).
install(CODE "
  set(QA_MODULE_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  set(QA_MODULE_VERSION \"${PROJECT_VERSION}\")
  configure_file(\"${CMAKE_SOURCE_DIR}/cmake/qalign.modulefile.in\"
                 \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_DATADIR}/qalign/modulefiles/qalign/${PROJECT_VERSION}\" @ONLY)
  message(STATUS \"Installing: \$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_DATADIR}/qalign/modulefiles/qalign/${PROJECT_VERSION}\")
")

# ---- .deb (cpack -G DEB in the build directory) ----------------------------------------------------
# Runtime dependencies: dpkg-shlibdeps reads them off the binary's shared libraries (CPU build); the
# PLplot cairo driver is loaded at run time (PNG/SVG figures) and mpirun comes from openmpi-bin.
# For a package that runs on other machines, configure with -DQALIGN_NATIVE=OFF (no -march=native).
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "qalign")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_CONTACT "qalign maintainers <qalign@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "question-alignment LoRA training, multilingual evaluation and analysis of HF LLMs")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION "science")
set(QA_DEB_EXTRA_DEPENDS "plplot-driver-cairo, openmpi-bin")
find_program(QA_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(QA_DPKG_SHLIBDEPS AND NOT QALIGN_HAVE_CUDA)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "${QA_DEB_EXTRA_DEPENDS}")
else()
  # the Debian 12 runtime packages of the libraries linked (CMakeLists.txt, pkg-config names)
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "libc6, libgcc-s1, libstdc++6, libjansson4, libyaml-0-2, libpcre2-8-0, libutf8proc2, libopenblas0, \
libhdf5-103-1, libplplot17, libopenmpi3, ${QA_DEB_EXTRA_DEPENDS}")
endif()
include(CPack)

# cmake/ema_mpi.cmake: libema_mpi, the MPI adapter of ema/dist.h (src/mpi),
# built only when MPI is found (Debian: openmpi-bin libopenmpi-dev). Its own
# pkg-config file (libema_mpi.pc) and CMake component
# (find_package(ema COMPONENTS mpi) -> ema::ema_mpi).
find_package(MPI COMPONENTS C QUIET)
if(NOT MPI_C_FOUND)
  message(STATUS "MPI not found: libema_mpi and the MPI tests are not built")
  return()
endif()
set(EMA_HAVE_MPI ON)
add_library(ema_mpi_shared SHARED ${CMAKE_CURRENT_SOURCE_DIR}/src/mpi/mpi.c)
add_library(ema_mpi_static STATIC ${CMAKE_CURRENT_SOURCE_DIR}/src/mpi/mpi.c)
target_link_libraries(ema_mpi_shared PUBLIC ema_shared MPI::MPI_C)
target_link_libraries(ema_mpi_static PUBLIC ema_static MPI::MPI_C)
foreach(t ema_mpi_shared ema_mpi_static)
  target_compile_options(${t} PRIVATE ${EMA_WARNINGS})
  set_target_properties(${t} PROPERTIES OUTPUT_NAME ema_mpi)
endforeach()
set_target_properties(ema_mpi_shared PROPERTIES VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}
  EXPORT_NAME ema_mpi)
set_target_properties(ema_mpi_static PROPERTIES EXPORT_NAME ema_mpi_static)
add_library(ema::ema_mpi ALIAS ema_mpi_shared)
install(TARGETS ema_mpi_shared ema_mpi_static EXPORT emaMpiTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(EXPORT emaMpiTargets NAMESPACE ema:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ema)
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/cmake/libema_mpi.pc.in ${CMAKE_CURRENT_BINARY_DIR}/libema_mpi.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/libema_mpi.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
if(EMA_BUILD_TOOLS)
  add_executable(train_sharded_mpi ${CMAKE_CURRENT_SOURCE_DIR}/examples/train_sharded_mpi.c)
  target_link_libraries(train_sharded_mpi PRIVATE ema_mpi_static m)
  target_compile_options(train_sharded_mpi PRIVATE ${EMA_WARNINGS})
endif()
if(EMA_BUILD_TOOLS)
  add_executable(bench_sharded ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_sharded.c)
  target_link_libraries(bench_sharded PRIVATE ema_mpi_static m)
  target_compile_options(bench_sharded PRIVATE ${EMA_WARNINGS} -O2)
  target_compile_definitions(bench_sharded PRIVATE _POSIX_C_SOURCE=200809L)
endif()

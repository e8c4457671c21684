# tests/dist: sharded EMA. test_dist* run ranks as threads of one process;
# the MPI tests (mpi.cmake) run under mpirun when Open MPI was found.
file(GLOB EMA_DIST_TESTS CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/test_*.c)
foreach(src ${EMA_DIST_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src ${CMAKE_CURRENT_LIST_DIR}/.. ${CMAKE_CURRENT_LIST_DIR}/..)
  target_link_libraries(${name} PRIVATE ema_static m Threads::Threads)
  target_compile_options(${name} PRIVATE ${EMA_WARNINGS} -ffp-contract=off)
  target_compile_definitions(${name} PRIVATE _POSIX_C_SOURCE=200809L)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES LABELS "dist" TIMEOUT 120)
endforeach()

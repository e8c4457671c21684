# tools/ema/tool.cmake: the `ema` command-line tool. Included (optionally) by
# the top-level CMakeLists.txt when EMA_BUILD_TOOLS is on, after the library
# targets exist. The tool uses the public header <ema/ema.h> only: it gets
# the include directory from ema_static, never src/.
#
# EMA_TOOL_BUILD_DIR tells `ema bench` where the build tree is, to find
# bench_apply when it is not next to the ema binary.

file(GLOB EMA_TOOL_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*.c)
add_executable(ema ${EMA_TOOL_SOURCES})
target_link_libraries(ema PRIVATE ema_static m)
# `ema demo` trains the network of examples/mlp.h, the one examples/train_mlp.c trains.
target_include_directories(ema PRIVATE ${PROJECT_SOURCE_DIR}/examples)
target_compile_options(ema PRIVATE ${EMA_WARNINGS})
target_compile_definitions(ema PRIVATE _POSIX_C_SOURCE=200809L
  EMA_TOOL_BUILD_DIR="${CMAKE_BINARY_DIR}")
install(TARGETS ema RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# Unity builds: the library, the CLI and the test runner compile several source files per
# translation unit, so that the templates they share (fmt, nlohmann::json, cxxopts, Catch) are
# instantiated and optimised once per batch instead of once per file; a build from scratch takes
# about half the CPU time. Every file still compiles on its own: -DLQ_UNITY_BUILD=OFF builds
# them one by one, to check that none relies on what a neighbour includes. The per-ISA kernel
# objects are single files already and take no part.

option(LQ_UNITY_BUILD "Compile the library, CLI and tests in batches of source files" ON)

# lq_unity(TARGET BATCH [EXCLUDE file...]): BATCH files per translation unit (0: all in one);
# the EXCLUDEd files define file-local names that clash with their neighbours' and stay alone.
function(lq_unity target batch)
  if(NOT LQ_UNITY_BUILD)
    return()
  endif()
  cmake_parse_arguments(ARG "" "" "EXCLUDE" ${ARGN})
  set_target_properties(${target} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE ${batch})
  if(ARG_EXCLUDE)
    set_source_files_properties(${ARG_EXCLUDE} PROPERTIES SKIP_UNITY_BUILD_INCLUSION ON)
  endif()
endfunction()

# Read by CPack once per generator (CPACK_PROJECT_CONFIG_FILE): keeps
# the components of that generator's file layout (see
# packaging/CMakeLists.txt). Other generators, such as TGZ, get the
# Debian layout.

if(CPACK_GENERATOR STREQUAL "RPM")
    set(CPACK_COMPONENTS_ALL module_rpm daemon_common daemon_rpm)
else()
    set(CPACK_COMPONENTS_ALL module_deb daemon_common daemon_deb)
endif()

# Each deb description starts with its own synopsis line; CPack would
# put the project's summary before it
if(CPACK_GENERATOR STREQUAL "DEB")
    unset(CPACK_PACKAGE_DESCRIPTION_SUMMARY)
endif()

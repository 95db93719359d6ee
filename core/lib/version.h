/*
 * version: the version of up, one place for every binary, the pkg-config
 * files and the man pages (the Makefile reads it from here).
 */
#ifndef UP_VERSION_H
#define UP_VERSION_H

#define UP_VERSION "0.1.0"

#endif

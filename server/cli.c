/* cli.c - see cli.h. (Being written.) */
#include "cli.h"

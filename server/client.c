/* client.c - see client.h. (Being written.) */
#include "client.h"

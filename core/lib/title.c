#include "title.h"

#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

extern char **environ;

static struct {
    char *start;
    size_t len;
} up_title_area;

/* The copies of the environment strings, held here as well as in environ:
 * unsetenv() only drops a pointer from environ (socket activation unsets
 * LISTEN_*), and a string held nowhere else would be a leak. */
static char **up_title_env;

static char **copy_args(int argc, char **argv)
{
    char **args = calloc((size_t)argc + 1, sizeof(*args));
    for (int i = 0; args != NULL && i < argc; i++) {
        if ((args[i] = strdup(argv[i])) == NULL) {
            up_title_free_args(args);
            return NULL;
        }
    }
    return args;
}

void up_title_free_args(char **args)
{
    for (size_t i = 0; args != NULL && args[i] != NULL; i++) {
        free(args[i]);
    }
    free(args);
}

char **up_title_init(int argc, char **argv)
{
    char **args = copy_args(argc, argv);
    if (args == NULL || argc <= 0 || argv[0] == NULL) {
        return args;
    }
    char *end = argv[argc - 1] + strlen(argv[argc - 1]) + 1;
    size_t n = 0;
    while (environ[n] != NULL) {
        n++;
    }
    /* Take in the environment strings that directly follow argv, and move
     * environ to a copy so that getenv() keeps working afterwards. */
    char **env = calloc(n + 1, sizeof(*env));
    up_title_env = calloc(n + 1, sizeof(*up_title_env));
    if (env == NULL || up_title_env == NULL) {
        free(env);
        free(up_title_env);
        up_title_env = NULL;
        up_title_area.start = argv[0];
        up_title_area.len = (size_t)(end - argv[0]);
        return args;
    }
    for (size_t i = 0; i < n; i++) {
        if (environ[i] == end) {
            end = environ[i] + strlen(environ[i]) + 1;
        }
        env[i] = up_title_env[i] = strdup(environ[i]);
    }
    environ = env;
    up_title_area.start = argv[0];
    up_title_area.len = (size_t)(end - argv[0]);
    return args;
}

void up_title_set(const char *title)
{
    (void)prctl(PR_SET_NAME, title, 0, 0, 0);
    if (up_title_area.start == NULL || up_title_area.len < 2) {
        return;
    }
    size_t n = strlen(title);
    if (n > up_title_area.len - 1) {
        n = up_title_area.len - 1;
    }
    memcpy(up_title_area.start, title, n);
    /* The kernel shows cmdline up to the first NUL when the area was
     * rewritten this way, so clearing the rest hides the old arguments. */
    memset(up_title_area.start + n, 0, up_title_area.len - n);
}

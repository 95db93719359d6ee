/*
 * metrics, the text format alone: HELP and TYPE once per name, labels,
 * histograms with cumulative buckets, and a page that does not fit is
 * refused whole rather than cut.
 */
#include <criterion/criterion.h>

#include "hist.h"
#include "metrics.h"

#include <string.h>

Test(metrics, the_text_format)
{
    static const double bounds[] = {0.001, 0.01};
    struct up_hist h;
    up_hist_init(&h, bounds, 2);
    up_hist_observe(&h, 0.0005);
    up_hist_observe(&h, 0.002);
    up_hist_observe(&h, 0.002);
    up_hist_observe(&h, 3);
    const struct up_metric v[] = {
        {"a_total", "counter", "As.", NULL, 7, NULL},
        {"w", "gauge", "Ws.", "g=\"1\",s=\"ready\"", 2, NULL},
        {"w", "gauge", "Ws.", "g=\"2\",s=\"starting\"", 1, NULL},
        {"d_seconds", "histogram", "Ds.", NULL, 0, &h},
    };
    char buf[2048];
    size_t n = up_metrics_format(v, 4, buf, sizeof(buf));
    cr_assert_eq(n, strlen(buf));
    cr_assert_str_eq(buf, "# HELP a_total As.\n# TYPE a_total counter\na_total 7\n"
                          "# HELP w Ws.\n# TYPE w gauge\nw{g=\"1\",s=\"ready\"} 2\n"
                          "w{g=\"2\",s=\"starting\"} 1\n"
                          "# HELP d_seconds Ds.\n# TYPE d_seconds histogram\n"
                          "d_seconds_bucket{le=\"0.001\"} 1\n"
                          "d_seconds_bucket{le=\"0.01\"} 3\n"
                          "d_seconds_bucket{le=\"+Inf\"} 4\n"
                          "d_seconds_sum 3.0045\n"
                          "d_seconds_count 4\n");
    cr_assert_eq(up_metrics_format(v, 4, buf, 100), 0, "a cut page");
}

/* admin_ui.c - the dashboard at /ui/ (one page of our own HTML, CSS and JavaScript, embedded at
 * build time by scripts/embed-ui.sh from admin/ui/) and GET /api/v1/whoami, which tells the page
 * whether its token may change anything.
 *
 * The page is served without a token: it holds no data, and every figure it shows comes from an
 * API call that carries the bearer token the operator typed in (kept in sessionStorage). It is
 * served under a Content-Security-Policy that allows nothing but this origin's own script, style
 * and API (W3C CSP Level 3): no inline script, no other origin, not framed (clickjacking), no
 * forms posted anywhere, so a user name or an allocation field shown on the page cannot run as
 * script even if the page's own escaping had a hole.
 */
#include "admin_int.h"

#include <string.h>

const char admin_ui_csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; "
                            "connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                            "base-uri 'none'; form-action 'none'";

static const char *ctype_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot && strcmp(dot, ".html") == 0)
        return "text/html; charset=utf-8";
    if (dot && strcmp(dot, ".js") == 0)
        return "text/javascript; charset=utf-8";
    if (dot && strcmp(dot, ".css") == 0)
        return "text/css; charset=utf-8";
    return "application/octet-stream";
}

void admin_h_ui(admin_req_t *r)
{
    /* /ui and /ui/ are the page; /ui/NAME one of the embedded files. */
    const char *name = r->nseg == 1 ? "index.html" : r->seg[1];
    bool nul = r->nseg == 2 && strlen(r->seg[1]) != r->seglen[1]; /* "%00" in the name */
    for (size_t i = 0; i < admin_ui_nassets && !nul; i++) {
        const admin_ui_asset_t *f = &admin_ui_assets[i];
        if (strcmp(f->name, name) == 0) {
            r->ui = true;
            admin_reply_text(r, 200, ctype_of(f->name), (const char *)f->data, f->len);
            return;
        }
    }
    admin_reply_error(r, 404, "not_found", "no such resource");
}

void admin_h_whoami(admin_req_t *r)
{
    admin_reply_json(r, 200,
                     json_pack("{s:s,s:b}", "access", r->readonly ? "read-only" : "full", "write",
                               !r->readonly));
}

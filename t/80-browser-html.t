#!/usr/bin/env perl
# Browser pages (SPEC section 9, docs/BROWSER.md), with curl-like requests
# against a real server: Accept negotiation (a browser gets the page, every
# other client the bare listing as before), escaping of hostile names in
# text, attributes and links, sorting, /snapshots/ order and verification
# status (real `mirrordav verify` runs), the report page, the versions page
# (3 snapshots, one revert: 3 versions in 2 SHA-1 groups), restore through
# the form, and every refusal of a forged or bad restore with nothing
# changed.  The Chromium tests of the same pages are t/8x-browser-*.t.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha1_hex);
use Fcntl qw(:flock);
use POSIX ();
use HTML::TreeBuilder;
use MirrorDAV::Test qw(slurp spew);

my $srv   = MirrorDAV::Test->start_server;
my $vol   = $srv->volume;
my $live  = $srv->live;
my $admin = MirrorDAV::Test->build . '/mirrordav';
my $BROWSER = 'text/html,application/xhtml+xml,application/xml;q=0.9,'
            . 'image/avif,image/webp,*/*;q=0.8';
my $origin = $srv->url('');

sub esc {    # a path for a request line: every byte but unreserved and /
    my ($p) = @_;
    $p =~ s{([^A-Za-z0-9\-._~/])}{sprintf '%%%02X', ord $1}ge;
    return $p;
}
sub page {
    my ($path, %h) = @_;
    return $srv->get($path, { Accept => $BROWSER, %h });
}
sub tree_of {
    my ($html) = @_;
    my $t = HTML::TreeBuilder->new;
    $t->utf8_mode(1);
    $t->ignore_unknown(0);    # <time>, <section>, <nav> are HTML5
    $t->parse($html);
    $t->eof;
    return $t;
}
sub texts { map { $_->as_text } @_ }

# ------------------------------------------------------------ the tree
my @hostile = ('<img src=x onerror=alert(1)>', q{"'&}, 'javascript:alert(1)',
               '%', "h\xc3\xa9llo-\xe2\x82\xac.txt", 'http:x', '<script>alert(1)');
for my $n (@hostile) {
    my $r = $srv->put('/dav/' . esc($n), "hostile $n");
    is($r->{status}, 201, "PUT a file named $n");
}
is($srv->mkcol('/dav/sort')->{status}, 201, 'MKCOL sort');
# Sizes, times and names in three different orders; two folders.
my %files = (b => [300, 1_600_000_300], a => [200, 1_600_000_100],
             c => [100, 1_600_000_200], d => [200, 1_600_000_200]);
for my $n (sort keys %files) {
    my ($size, $mtime) = @{ $files{$n} };
    my $r = $srv->put("/dav/sort/$n", 'x' x $size, { 'X-OC-Mtime' => $mtime });
    is($r->{status}, 201, "PUT sort/$n");
}
is($srv->mkcol("/dav/sort/$_")->{status}, 201, "MKCOL sort/$_") for qw(zdir adir);
# The folders' times tie (MKCOL may straddle a second), so that by time
# they are ordered by name.
utime 1_600_000_000, 1_600_000_000, "$live/sort/$_" or die for qw(zdir adir);

# ------------------------------------------------------------ negotiation
my $plain_re = qr{\A<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Index of /dav/sort</title></head><body>\n<h1>Index of /dav/sort</h1>\n<table>\n<tr><th>Name</th><th>Size</th><th>Modified</th></tr>\n<tr><td><a href="/dav/sort/\.\./?};
for my $accept (undef, '*/*', 'application/xml', 'text/xml, text/html',
                'application/xml;q=1, text/html;q=0.5', 'text/*', 'text/html;q=0',
                'text/html;q=abc', 'text/html;q=nan, */*', 'text/html;q=', '*/*, text/html') {
    my $r = $srv->get('/dav/sort/', defined $accept ? { Accept => $accept } : {});
    my $what = defined $accept ? "Accept: $accept" : 'no Accept';
    is($r->{status}, 200, "$what: 200");
    like($r->{content}, qr{^<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Index of /dav/sort</title>},
         "$what: the bare listing, as before");
    ok(defined $r->{headers}{etag} && !defined $r->{headers}{vary}
       && !defined $r->{headers}{'content-security-policy'},
       "$what: the headers as before (ETag, no Vary, no CSP)");
    unlike($r->{content}, qr{class="listing"}, "$what: no page");
}
for my $accept ($BROWSER, 'text/html', 'text/html, */*;q=0.1',
                'application/json;q=0.5, text/html', 'TEXT/HTML ; Q=1', " text/html\t;level=1 , */*;q=0.5") {
    my $r = $srv->get('/dav/sort/', { Accept => $accept });
    like($r->{content}, qr{<table class="listing">}, "Accept: $accept: the page");
    is($r->{headers}{'content-type'}, 'text/html; charset=utf-8', '... text/html; charset=utf-8');
    is($r->{headers}{'cache-control'}, 'no-store', '... Cache-Control: no-store');
    like($r->{headers}{vary} // '', qr/\bAccept\b/, '... Vary: Accept');
    is($r->{headers}{'x-content-type-options'}, 'nosniff', '... nosniff');
    is($r->{headers}{'referrer-policy'}, 'same-origin', '... Referrer-Policy');
    is($r->{headers}{'content-security-policy'},
       q{default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'},
       '... the Content-Security-Policy');
    unlike($r->{content}, qr{<script}i, '... no script');
}
{
    my $r = $srv->request('HEAD', '/dav/sort/', { Accept => $BROWSER });
    is($r->{status}, 200, 'HEAD of a page: 200');
    is($r->{headers}{'cache-control'}, 'no-store', '... with the page headers');
    is($r->{content} // '', '', '... and no body');
    # Garbage and repeated sort parameters, and a long query: the default order.
    for my $q ('?sort=%zz&order=%00', '?sort=size%00&order=desc%', '?sort=&order=',
               '?' . ('x=1&' x 1500) . 'sort=name') {
        $r = page("/dav/sort/$q");
        is($r->{status}, 200, 'a page with query ' . substr($q, 0, 30) . ': 200');
        like($r->{content}, qr{<th class="name" aria-sort="ascending">}, '... by name, ascending');
    }
}
# The WebDAV clients list through PROPFIND, which the pages do not touch.
{
    my $out = `printf 'ls\\nquit\\n' | cadaver '${\ $srv->url('/dav/sort/')}' 2>&1`;
    like($out, qr/\badir\b.*\bzdir\b/s, 'cadaver ls lists the folders') or diag($out);
    like($out, qr/^\s*b\s+300\b/m, 'cadaver ls lists a file with its size');
    local $ENV{RCLONE_WEBDAV_URL} = $srv->url('/dav/sort');
    local $ENV{RCLONE_CONFIG} = '/dev/null';
    my $ls = `rclone lsl :webdav: 2>&1`;
    like($ls, qr/^\s*300 2020-09-13 \S+ b$/m, 'rclone lsl: b with its size and date')
        or diag($ls);
}

# On a phone, columns are hidden whole: a header is hidden with its cells.
{
    my ($rule) = page('/dav/')->{content} =~ /\@media \(max-width:[^)]*\)\{([^{]*)\{display:none\}/;
    ok($rule, 'a narrow-screen rule hides some columns');
    my %hidden = map { $_ => 1 } split /,/, $rule // '';
    for my $sel (sort keys %hidden) {
        my ($kind, $class) = $sel =~ /^(td|th)\.(\w+)$/ or next;
        my $other = ($kind eq 'td' ? 'th' : 'td') . ".$class";
        ok($hidden{$other}, "$sel is hidden with $other");
    }
}

# ------------------------------------------------------------ escaping
{
    my $r = page('/dav/');
    my $html = $r->{content};
    unlike($html, qr{<img}i, 'no raw <img in the page');
    unlike($html, qr{<script}i, 'no raw <script in the page');
    like($html, qr{&lt;img src=x onerror=alert\(1\)&gt;}, 'the <img name is there, escaped');
    my $t = tree_of($html);
    my %row;
    for my $a ($t->look_down(_tag => 'td', class => 'name')) {
        my $link = $a->look_down(_tag => 'a') or next;
        $row{ $link->as_text } = $link->attr('href');
    }
    for my $n (@hostile) {
        my $text = $n;
        utf8::decode($text) unless exists $row{$text};
        ok(exists $row{$text}, "the name $n is shown as text") or diag(join ', ', keys %row);
        my $href = $row{$text} // '';
        like($href, qr{^\./}, "... its link starts with ./ (never a scheme or //)");
        my $dec = $href;
        $dec =~ s/^\.\///;
        $dec =~ s/%([0-9A-F]{2})/chr hex $1/ge;
        is($dec, $n, '... and decodes to the name');
    }
    for my $a ($t->look_down(_tag => 'a')) {
        my $h = $a->attr('href') // '';
        unlike($h, qr{^(?:[a-z][a-z0-9+.-]*:|//)}i, "href $h: no scheme, no network path");
    }
    for my $n (@hostile) {
        my $r = $srv->get('/dav/' . esc($n));
        is($r->{content}, "hostile $n", "the link of $n downloads it");
    }
    $t->delete;
}

# ------------------------------------------------------------ sorting
sub order {
    my ($q) = @_;
    my $r = page("/dav/sort/$q");
    my $t = tree_of($r->{content});
    my @rows = map { [$_->attr('class'), ($_->look_down(_tag => 'td', class => 'name')->as_text)] }
               $t->look_down(_tag => 'tr', class => qr/^(?:dir|file)$/);
    my %aria = map { ($_->attr('class') => $_->attr('aria-sort') // '') } $t->look_down(_tag => 'th');
    $t->delete;
    return (join(' ', map { $_->[1] } @rows), \%aria, $r->{content});
}
my ($o, $aria, $html) = order('');
is($o, 'adir/ zdir/ a b c d', 'default: folders first, by name ascending');
is($aria->{name}, 'ascending', '... marked aria-sort=ascending on Name');
is($aria->{size} . $aria->{mtime}, '', '... and on no other column');
like($html, qr{<th class="name" aria-sort="ascending"><a href="\?sort=name&amp;order=desc">}, '... its link turns the order round');
like($html, qr{<th class="size"><a href="\?sort=size&amp;order=asc">}, '... the others start ascending');
($o) = order('?sort=name&order=desc');
is($o, 'zdir/ adir/ d c b a', 'name descending (folders still first)');
($o, $aria) = order('?sort=size&order=asc');
is($o, 'adir/ zdir/ c a d b', 'size ascending, ties by name');
is($aria->{size}, 'ascending', '... aria-sort on Size');
($o, $aria) = order('?sort=size&order=desc');
is($o, 'adir/ zdir/ b a d c', 'size descending, ties by name');
is($aria->{size}, 'descending', '... aria-sort=descending');
($o) = order('?sort=mtime&order=asc');
is($o, 'adir/ zdir/ a c d b', 'mtime ascending, ties by name');
($o) = order('?sort=mtime&order=desc');
is($o, 'adir/ zdir/ b c d a', 'mtime descending, ties by name');
like($html, qr{<td class="size" data-bytes="300" title="300 bytes">300 B</td>}, 'size cell: exact bytes and human size');
like($html, qr{<time datetime="2020-09-13T12:31:40Z">2020-09-13 12:31:40Z</time>}, 'mtime cell: UTC, ISO 8601');
like($html, qr{<nav class="breadcrumbs" aria-label="Breadcrumb"><ol><li><a href="/dav/">dav</a></li><li><a href="/dav/sort/" aria-current="page">sort</a></li></ol></nav>},
     'breadcrumbs, the last one the current page');
unlike($html, qr{\.mirrordav}, 'the sidecar folder never appears');

# ------------------------------------------------------------ snapshots
sub set_created {    # the record's creation time, as the engine wrote it
    my ($name, $t) = @_;
    my $f = "$vol/state/snapshots/$name.rec";
    my $rec = slurp($f);
    $rec =~ s/^created=\d+$/created=$t/m or die "no created in $f";
    spew($f, $rec);
}
sub admin {
    my $out = `'$admin' @_ 2>&1`;
    return ($out, $? >> 8);
}

# A manifest of a folder, three snapshots of it; one gets a damaged file.
is($srv->mkcol('/dav/m')->{status}, 201, 'MKCOL m');
is($srv->put("/dav/m/f$_", "file $_\n")->{status}, 201, "PUT m/f$_") for 1 .. 3;
my ($out, $rc) = admin("manifest generate '$live/m' -o '$live/m/m.manifest'");
is($rc, 0, 'manifest generate') or diag($out);
system('chown', '-R', '--reference', $live, "$live/m") if $< == 0;
for my $s (qw(clean dirty never)) {
    is($srv->mkcol("/snapshots/$s")->{status}, 201, "MKCOL /snapshots/$s");
}
{   # damage one file of "dirty" without touching the live tree's (which a
    # hard-link snapshot shares): a private copy, then other bytes
    my $f = "$vol/snapshots/dirty/m/f2";
    system('cp', '-p', $f, "$f.tmp") == 0 && rename("$f.tmp", $f) or die;
    my $m = (stat $f)[9];
    spew($f, "FILE 2\n");
    utime $m, $m, $f;
    unlink "$vol/snapshots/dirty/m/f3" or die;
}
($out, $rc) = admin("verify --volume '$vol' --snapshot clean");
is($rc, 0, 'verify clean: exit 0') or diag($out);
($out, $rc) = admin("verify --volume '$vol' --snapshot dirty");
is($rc, 1, 'verify dirty: exit 1') or diag($out);
# Creation times out of name order; "dirty" and "clean" tie (ties: name
# descending).
set_created('never', 1_700_000_300);
set_created('clean', 1_700_000_100);
set_created('dirty', 1_700_000_100);
{
    my $r = page('/snapshots/');
    is($r->{status}, 200, '/snapshots/: 200');
    my $t = tree_of($r->{content});
    my @rows = $t->look_down(_tag => 'tr', class => 'snapshot');
    is(join(' ', map { $_->attr('data-name') } @rows), 'never dirty clean',
       'newest first, ties by name descending');
    my %st = map { ($_->attr('data-name') => $_->look_down(_tag => 'td', class => 'status')) } @rows;
    is($st{never}->attr('data-status'), 'not-verified', 'never: data-status not-verified');
    is($st{never}->as_text, 'not verified', '... "not verified"');
    is($st{clean}->attr('data-status'), 'clean', 'clean: data-status clean');
    is($st{clean}->as_text, 'verified clean', '... "verified clean"');
    is($st{dirty}->attr('data-status'), 'discrepancies', 'dirty: data-status discrepancies');
    my $n = () = $out =~ /^[^#\n][^\n]*\t[^\n]*\n/mg;
    is($st{dirty}->as_text, "$n discrepancies", "... \"$n discrepancies\"");
    is($st{dirty}->look_down(_tag => 'a')->attr('href'), '/snapshots/dirty/?report', '... a link to the report');
    my ($name) = $rows[0]->look_down(_tag => 'td', class => 'name')->look_down(_tag => 'a');
    is($name->attr('href'), '/snapshots/never/', 'the name links to the snapshot');
    like($rows[0]->look_down(_tag => 'td', class => 'created')->as_HTML,
         qr{<time datetime="2023-11-14T22:18:20Z">}, 'creation time in UTC');
    $t->delete;

    $r = page('/snapshots/dirty/?report');
    is($r->{status}, 200, 'the report page: 200');
    $t = tree_of($r->{content});
    my %got = map {
        my @c = map { $_->as_text } $_->look_down(_tag => 'td');
        ("$c[0] $c[1]" => 1)
    } $t->look_down(_tag => 'tr', class => 'discrepancy');
    ok($got{'m/f2 hash'} && $got{'m/f3 missing'}, 'it lists the hash and the missing discrepancies')
        or diag(join ', ', keys %got);
    is(scalar(keys %got), $n, '... as many as the verifier found');
    $t->delete;
    # The report is a file in state/: its fields are text, whatever they hold.
    {
        my $f = "$vol/state/verify/dirty/report";
        my $keep = slurp($f);
        spew($f, $keep . "%3Cimg src=x onerror=alert(1)%3E\t<script>alert(1)</script>\t\"'&\tjavascript:x\n");
        my $h = page('/snapshots/dirty/?report')->{content};
        unlike($h, qr{<img|<script}i, 'a hostile report line: no raw tag');
        my $t2 = tree_of($h);
        my ($tr) = grep { $_->as_text =~ /onerror/ } $t2->look_down(_tag => 'tr', class => 'discrepancy');
        is(join('|', map { $_->as_text } $tr ? $tr->look_down(_tag => 'td') : ()),
           q{<img src=x onerror=alert(1)>|<script>alert(1)</script>|"'&|javascript:x}, '... its fields shown as text');
        $t2->delete;
        spew($f, $keep);
    }
    $r = page('/snapshots/clean/?report');
    unlike($r->{content}, qr{class="discrepancy"}, 'a clean snapshot\'s report: no row');
    $r = page('/snapshots/clean/m/');
    like($r->{content}, qr{<a href="\./f1">f1</a>}, 'a directory inside a snapshot: the listing page');
    like($r->{content}, qr{<li><a href="/snapshots/clean/">clean</a></li><li><a href="/snapshots/clean/m/" aria-current="page">m</a></li>},
         '... with its breadcrumbs');
}

# ------------------------------------------------------------ versions
# v.txt: A, then B, then A again (the revert), one snapshot after each.
my %content = (A => "version A\n", B => "version B, longer\n");
my $t0 = 1_710_000_000;
my $k = 0;
for my $step (['v1', 'A'], ['v2', 'B'], ['v3', 'A']) {
    my ($snap, $which) = @$step;
    is($srv->put('/dav/v.txt', $content{$which}, { 'X-OC-Mtime' => $t0 + 100 * $k })->{status},
       $k ? 204 : 201, "PUT v.txt ($which)");
    is($srv->mkcol("/snapshots/$snap")->{status}, 201, "MKCOL /snapshots/$snap");
    set_created($snap, $t0 + 1000 * ++$k);
}
is($srv->put('/dav/v.txt', "live now\n")->{status}, 204, 'PUT v.txt (the live version)');
my ($token, %rows);
{
    my $r = page('/dav/v.txt?versions');
    is($r->{status}, 200, 'versions page: 200');
    is($r->{headers}{'content-type'}, 'text/html; charset=utf-8', '... HTML');
    my $t = tree_of($r->{content});
    is($t->look_down(_tag => 'h1')->as_text, '/dav/v.txt', 'the <h1> names the live path');
    like($t->look_down(_tag => 'section', class => 'current')->as_text,
         qr/${\ sha1_hex("live now\n")}/, 'the current section shows the live SHA-1');
    my @groups = $t->look_down(_tag => 'section', class => 'version-group');
    is(scalar @groups, 2, '3 versions in 2 groups');
    is($groups[0]->attr('data-sha1'), sha1_hex($content{A}), 'the first group: A (newest member v3)');
    is(join(' ', map { $_->attr('data-snapshot') } $groups[0]->look_down(_tag => 'tr', class => 'version')),
       'v3 v1', '... holds v3 and v1, newest first');
    is($groups[1]->attr('data-sha1'), sha1_hex($content{B}), 'the second group: B');
    is(join(' ', map { $_->attr('data-snapshot') } $groups[1]->look_down(_tag => 'tr', class => 'version')),
       'v2', '... holds v2');
    for my $tr ($t->look_down(_tag => 'tr', class => 'version')) {
        my $s = $tr->attr('data-snapshot');
        $rows{$s} = $tr;
        my $which = $s eq 'v2' ? 'B' : 'A';
        is($tr->look_down(_tag => 'td', class => 'sha1')->as_text, sha1_hex($content{$which}), "$s: the SHA-1 of $which");
        is($tr->look_down(_tag => 'td', class => 'size')->attr('data-bytes'), length $content{$which}, "$s: its size");
        is($tr->look_down(_tag => 'a', class => 'download')->attr('href'), "/snapshots/$s/v.txt", "$s: the download link");
        my $form = $tr->look_down(_tag => 'form', class => 'restore');
        ok($form, "$s: a restore form") or next;
        is($form->attr('method'), 'post', '... POST');
        is($form->attr('action'), '/dav/v.txt', '... to the live file');
        my %in = map { ($_->attr('name') => $_->attr('value')) } $form->look_down(_tag => 'input');
        is($in{action}, 'restore', '... action=restore');
        is($in{snapshot}, $s, '... snapshot=' . $s);
        $token = $in{token};
    }
    $t->delete;
    is($srv->get('/snapshots/v1/v.txt')->{content}, $content{A}, 'the download link of v1 gives A');
    $r = page('/snapshots/v2/v.txt?versions');
    like($r->{content}, qr{<h1>/dav/v\.txt</h1>}, 'the versions page of a snapshot file names the live path');
    is(() = $r->{content} =~ /class="version"/g, 3, '... and lists the same 3 versions');
}
ok(-s "$vol/state/browser-secret", 'the volume secret exists in state/');
is(sprintf('%o', (stat "$vol/state/browser-secret")[2] & 07777), '600', '... mode 0600');

# ------------------------------------------------------------ restore
# What must not change on a refusal: the live file and its sidecar.
sub fingerprint {
    my @st = stat "$live/v.txt";
    my ($db) = grep { -f } ("$live/.mirrordav/v.txt.db");
    my @sd = stat $db;
    return join ' ', sha1_hex(slurp("$live/v.txt")), @st[1, 7, 9], $sd[1] // '-', sha1_hex(slurp($db) // '');
}
sub restore {
    my (%o) = @_;
    my %f = (action => 'restore', snapshot => 'v1', token => $token, %{ $o{form} // {} });
    delete $f{$_} for @{ $o{drop} // [] };
    my $body = join '&', map { "$_=" . esc($f{$_}) } sort keys %f;
    my %h = ('Content-Type' => 'application/x-www-form-urlencoded');
    $h{Origin} = $o{origin} // $origin unless $o{no_origin};
    $h{Referer} = $o{referer} if $o{referer};
    %h = (%h, %{ $o{headers} // {} });
    return $srv->request('POST', $o{path} // '/dav/v.txt', \%h, $body);
}
my $before = fingerprint();
my @refusals = (
    ['no token', 403, qr/token/, drop => ['token']],
    ['a bad token', 403, qr/token/, form => { token => 'f' x 64 }],
    ['a token of another path', 403, qr/token/, path => '/dav/sort/a'],
    ['a foreign Origin', 403, qr/Origin/, origin => 'http://evil.example'],
    ['Origin: null', 403, qr/Origin/, origin => 'null'],
    ['another port as Origin', 403, qr/Origin/, origin => 'http://127.0.0.1:1'],
    ['no Origin and no Referer', 403, qr/Referer/, no_origin => 1],
    ['no Origin, a foreign Referer', 403, qr/Referer/, no_origin => 1, referer => 'http://evil.example/dav/v.txt?versions'],
    ['no Origin, a look-alike Referer', 403, qr/Referer/, no_origin => 1, referer => "${origin}0/dav/"],
    ['a bad snapshot name', 400, qr/snapshot name/, form => { snapshot => '../v1' }],
    ['an unknown snapshot', 404, qr/No such snapshot/, form => { snapshot => 'nosuch' }],
    ['a snapshot without the file', 404, qr/no file/, form => { snapshot => 'clean' }],
    ['an unknown action', 400, qr/Unknown/, form => { action => 'delete' }],
    ['no action', 400, qr/Malformed/, drop => ['action']],
);
for my $c (@refusals) {
    my ($what, $status, $re, %o) = @$c;
    if ($what eq 'a token of another path') {   # a real token, for sort/a
        my $p = page('/dav/sort/a?versions');
        # sort/a is in no snapshot: take the token of a page that has one
        my ($tk) = page('/dav/m/f1?versions')->{content} =~ /name="token" value="([0-9a-f]+)"/;
        $o{form} = { token => $tk };
        $o{path} = '/dav/v.txt';
        ok($tk && $tk ne $token, 'a token handed out for m/f1 differs');
    }
    my $r = restore(%o);
    is($r->{status}, $status, "restore with $what: $status");
    like($r->{content}, $re, '... the body names the cause') or diag($r->{content});
    is(fingerprint(), $before, '... the live file and its sidecar are unchanged');
}
{   # a field given twice: which one counts is a guess, so neither does
    my $r = $srv->request('POST', '/dav/v.txt', { 'Content-Type' => 'application/x-www-form-urlencoded', Origin => $origin },
                          "action=restore&snapshot=v1&snapshot=nosuch&token=$token");
    is($r->{status}, 400, 'restore with the snapshot field given twice: 400');
    like($r->{content}, qr/twice/, '... the body names the cause');
    is(fingerprint(), $before, '... the live file and its sidecar are unchanged');
}
{   # a POST that is not a form is left as it was: 404
    my $r = $srv->request('POST', '/dav/v.txt', { 'Content-Type' => 'text/plain' }, 'x');
    is($r->{status}, 404, 'a POST that is not a form: 404 as before');
    is(fingerprint(), $before, '... nothing changed');
}
{   # locked: 423, as a client's COPY without the lock token
    my $lock = $srv->request('LOCK', '/dav/v.txt', { 'Content-Type' => 'application/xml', Timeout => 'Second-600' },
        q{<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>});
    is($lock->{status}, 200, 'LOCK the live file');
    my $lt = $lock->{headers}{'lock-token'} // '';
    $lt =~ s/^\s*<|>\s*$//g;
    my $b2 = fingerprint();
    my $r = restore();
    is($r->{status}, 423, 'restore of a locked file: 423');
    like($r->{content}, qr/locked/i, '... the body says it is locked');
    is(fingerprint(), $b2, '... the live file and its sidecar are unchanged');
    is($srv->request('UNLOCK', '/dav/v.txt', { 'Lock-Token' => "<$lt>" })->{status}, 204, 'UNLOCK');
    $before = fingerprint();
}
{
    my $r = restore();
    is($r->{status}, 200, 'restore of v1 through the form: 200');
    my $t = tree_of($r->{content});
    is($t->look_down(_tag => 'p', class => 'restored')->as_text, 'Restored v.txt from snapshot v1',
       '... the page says what was restored');
    is($t->look_down(_tag => 'a', class => 'restored-file')->attr('href'), '/dav/v.txt', '... and links to the file');
    $t->delete;
    is($srv->get('/dav/v.txt')->{content}, $content{A}, 'GET shows the old bytes');
    my $pf = $srv->propfind('/dav/v.txt', 0,
        qq{<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:M="http://mirrordav.org/ns"><D:prop><M:sha1/></D:prop></D:propfind>});
    like($pf->{content}, qr{<(?:\w+:)?sha1[^>]*>${\ sha1_hex($content{A})}<}, 'PROPFIND: the sidecar SHA-1 of the old bytes')
        or diag($pf->{content});
    is((stat "$live/v.txt")[9], $t0, '... and the old mtime');
    # A same-origin Referer without Origin is enough.
    $r = restore(no_origin => 1, referer => "$origin/dav/v.txt?versions", form => { snapshot => 'v2' });
    is($r->{status}, 200, 'restore with a same-origin Referer and no Origin: 200');
    is($srv->get('/dav/v.txt')->{content}, $content{B}, '... v2\'s bytes are back');
    # A file no snapshot holds: no form on its page, and a token of
    # another file does not open it.
    is($srv->put('/dav/late.txt', "late\n")->{status}, 201, 'PUT late.txt (in no snapshot)');
    unlike(page('/dav/late.txt?versions')->{content}, qr{<form}, 'its versions page has no form');
    $r = restore(path => '/dav/late.txt');
    is($r->{status}, 403, 'a restore of it with the token of v.txt: 403');
    is($srv->get('/dav/late.txt')->{content}, "late\n", '... it is unchanged');
}
# The write barrier: a restore is a live write, so it waits while a
# snapshot holds the barrier (state/barrier, flock'ed exclusively here as
# the snapshot engine does) and happens once it is released.  The 2 s are
# a generous bound that proves the barrier is waited for, not a speed.
{
    my $b3 = fingerprint();
    open my $bar, '<', "$vol/state/barrier" or die "barrier: $!";
    flock($bar, LOCK_EX) or die "flock: $!";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        my $r = restore(form => { snapshot => 'v1' });
        POSIX::_exit($r->{status} == 200 ? 0 : 1);
    }
    sleep 2;
    is(fingerprint(), $b3, 'a restore while a snapshot holds the barrier: nothing changed yet');
    flock($bar, LOCK_UN);
    close $bar;
    waitpid($pid, 0);
    is($?, 0, '... it is done (200) once the barrier is released');
    is($srv->get('/dav/v.txt')->{content}, $content{A}, '... v1\'s bytes are back');
}
# A file deleted from the live tree: its versions page, reached from a
# snapshot, says so and still offers the restore, which brings it back.
{
    is($srv->delete('/dav/m/f1')->{status}, 204, 'DELETE m/f1');
    my $r = page('/snapshots/clean/m/f1?versions');
    like($r->{content}, qr{<p class="absent">/dav/m/f1 does not exist now\.</p>}, 'its versions page says it does not exist now');
    my ($tk) = $r->{content} =~ /name="token" value="([0-9a-f]{64})"/;
    ok($tk, '... and offers restore');
    $r = $srv->request('POST', '/dav/m/f1', { 'Content-Type' => 'application/x-www-form-urlencoded', Origin => $origin },
                       "action=restore&snapshot=clean&token=$tk");
    is($r->{status}, 200, 'restore of the deleted file: 200');
    is($srv->get('/dav/m/f1')->{content}, "file 1\n", '... it is back');
}

# Hostile names on the versions page, and restored through the form (the
# COPY's source and Destination escaped).
for my $n (@hostile) {
    my $u = '/dav/' . esc($n);
    is($srv->put($u, "changed $n")->{status}, 204, "PUT over $n");
    my $r = page("$u?versions");
    is($r->{status}, 200, "versions page of $n: 200");
    unlike($r->{content}, qr{<img|<script}i, '... no raw tag from the name');
    my $t = tree_of($r->{content});
    is($t->look_down(_tag => 'h1')->as_text, do { my $x = "/dav/$n"; utf8::decode($x) unless $r->{content} =~ /\Q$n\E/; $x },
       '... the <h1> shows the name as text');
    my ($form) = grep { $_->look_down(_tag => 'input', name => 'snapshot', value => 'clean') }
                 $t->look_down(_tag => 'form', class => 'restore');
    ok($form, '... a restore form for snapshot clean') or next;
    my $action = $form->attr('action');
    (my $dec = $action) =~ s/%([0-9A-F]{2})/chr hex $1/ge;
    is($dec, "/dav/$n", '... its action is the live URL, percent-encoded');
    my ($dl) = grep { ($_->attr('href') // '') =~ m{^/snapshots/clean/} } $t->look_down(_tag => 'a', class => 'download');
    is($srv->get($dl->attr('href'))->{content}, "hostile $n", '... the download link gives the snapshot\'s bytes');
    my %in = map { ($_->attr('name') => $_->attr('value')) } $form->look_down(_tag => 'input');
    $t->delete;
    my $body = join '&', map { "$_=" . esc($in{$_}) } sort keys %in;
    $r = $srv->request('POST', $action, { 'Content-Type' => 'application/x-www-form-urlencoded', Origin => $origin }, $body);
    is($r->{status}, 200, "... restore of $n: 200") or diag($r->{content});
    is($srv->get($u)->{content}, "hostile $n", '... the old bytes are back');
}

# A file that is a folder in the live tree now: restoring the snapshot's
# file would delete the folder and all it holds, so the page offers no
# form and a restore POST (with a token from when it was a file) is
# refused with 409, the folder intact.
{
    is($srv->put('/dav/fd', "a file\n")->{status}, 201, 'PUT fd (a file)');
    is($srv->mkcol('/snapshots/fdsnap')->{status}, 201, 'MKCOL /snapshots/fdsnap');
    my ($tk) = page('/dav/fd?versions')->{content} =~ /name="token" value="([0-9a-f]{64})"/;
    ok($tk, 'its versions page offers restore while it is a file');
    is($srv->delete('/dav/fd')->{status}, 204, 'DELETE fd');
    is($srv->mkcol('/dav/fd')->{status}, 201, 'MKCOL fd (now a folder)');
    is($srv->put('/dav/fd/inner', "inner\n")->{status}, 201, 'PUT fd/inner');
    my $r = page('/snapshots/fdsnap/fd?versions');
    like($r->{content}, qr{<p class="folder">/dav/fd is a folder now}, 'the versions page says it is a folder now');
    unlike($r->{content}, qr{<form}, '... and offers no restore form');
    $r = $srv->request('POST', '/dav/fd', { 'Content-Type' => 'application/x-www-form-urlencoded', Origin => $origin },
                       "action=restore&snapshot=fdsnap&token=$tk");
    is($r->{status}, 409, 'a restore POST over the folder: 409');
    like($r->{content}, qr/folder/, '... the body says a folder is in the way');
    is($srv->get('/dav/fd/inner')->{content}, "inner\n", '... the folder and what it holds are intact');
}

unlike($srv->error_log, qr/AddressSanitizer|segfault|exit signal/i, 'no crash in the error log');

done_testing;

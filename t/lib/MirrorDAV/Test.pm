package MirrorDAV::Test;

# Test harness: starts a real httpd with the module on a free loopback port
# and a fresh volume, talks HTTP to it, and stops it.  On a failed test the
# run directory (config, error and access logs) is kept and its path shown.

use strict;
use warnings;
use Exporter 'import';
use File::Temp ();
use File::Path qw(make_path remove_tree);
use HTTP::Tiny;
use IO::Socket::INET;
use POSIX ();
use Scalar::Util ();
use Test::More ();
use Time::HiRes qw(sleep time);

our @EXPORT_OK = qw(start_server slurp spew sha1_file random_file);

use File::Spec ();
my $TOP   = $ENV{MIRRORDAV_TOP}   || do {
    my $d = File::Spec->rel2abs(__FILE__);
    $d =~ s{/t/lib/MirrorDAV/Test\.pm$}{};
    $d;
};
my $BUILD = $ENV{MIRRORDAV_BUILD} || "$TOP/build";

our %LIVE;   # servers started by this process, weakly held

# apache2 lives in /usr/sbin, which an ordinary user's PATH may lack.
my ($HTTPD) = grep { -x $_ } map { "$_/apache2" } split(/:/, $ENV{PATH} // ''), '/usr/sbin', '/sbin';
$HTTPD //= 'apache2';

# MIRRORDAV_ASAN=1: the module built with ASan and UBSan (`make asan`,
# build/asan/), httpd started with the matching libasan preloaded, and any
# ASan or UBSan report from httpd fails the test (and is copied into
# MIRRORDAV_ASAN_LOG_DIR when set: t/90-asan-error-paths.t checks it).
# What ASan cannot see here: APR pools carve their allocations out of
# blocks they get from an allocator, and ASan sees only the blocks.  An
# overflow from one pool allocation into the next, or a use of memory the
# pool has handed out again, goes unnoticed; so does a use after free
# while the block sits in an allocator's free list.  MaxMemFree 1 (KiB)
# makes the allocators give freed blocks back to malloc at once, so the
# blocks of a destroyed or cleared pool (a request's, a per-iteration
# sub-pool's) land in ASan's quarantine and a later use is reported.  A
# pool keeps its first block (8 KiB) when cleared, and memory within a
# block a live pool still holds stays invisible unless APR itself is
# built with pool debugging (--enable-pool-debug).
my $ASAN = $ENV{MIRRORDAV_ASAN};
my $ASAN_BUILT;

sub top   { $TOP }
sub build { $BUILD }

sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, Proto => 'tcp', ReuseAddr => 1)
        or die "no free port: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

# start_server(fsync => 'On'|'Off', conf_extra => "...", wrap => [...])
sub start_server {
    my ($class, %o) = @_;
    my $base = File::Temp::tempdir('mirrordav-t-XXXXXX', TMPDIR => 1,
                                   CLEANUP => 0);
    chmod 0755, $base;
    my $self = bless {
        base   => $base,
        volume => $o{volume} // "$base/volume",
        run    => "$base/run",
        port   => free_port(),
        opts   => \%o,
        owner  => $$,
    }, $class;
    $self->{live} = "$self->{volume}/live";
    $self->{url}  = "http://127.0.0.1:$self->{port}";
    make_path($self->{run}, $self->{volume});
    system("$TOP/script/init-volume", $self->{volume}) == 0
        or die "init-volume failed";
    my $module = "$BUILD/.libs/mod_mirrordav.so";
    if ($ASAN) {
        $ASAN_BUILT //= system('make', '-s', '-C', $BUILD, 'asan') == 0
            or die "make asan failed";
        $module = "$BUILD/asan/.libs/mod_mirrordav.so";
    }
    chomp(my $conf = `$TOP/script/render-conf '$self->{run}' '$self->{volume}' $self->{port} '$module' ${\($o{fsync} // 'On')} ${\($o{log_level} // 'info')}`);
    die "render-conf failed" if $?;
    if ($ASAN) {
        open my $fh, '>>', $conf or die;
        print $fh "\nMaxMemFree 1\n";
        close $fh;
    }
    if (my $extra = $o{conf_extra}) {
        open my $fh, '>>', $conf or die;
        print $fh "\n$extra\n";
        close $fh;
    }
    $self->{conf} = $conf;
    $self->_launch;
    $LIVE{"$self"} = $self;
    Scalar::Util::weaken($LIVE{"$self"});
    return $self;
}

# Servers still alive when the test script ends (say, one captured by a
# named sub) are stopped here, while Test::More can still say whether the
# run passed, rather than in global destruction.
END {
    my $died = $?;   # a script that died keeps its run directory too
    local $?;
    for my $k (keys %LIVE) {
        my $s = delete $LIVE{$k} or next;
        $s->{keep} = 1 if $died;
        $s->DESTROY;
    }
}

sub _launch {
    my ($self) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        # Its own process group, so that a crash takes every child with it,
        # even one being spawned at that instant.
        POSIX::setpgid(0, 0);
        open STDOUT, '>>', "$self->{run}/stdout.log";
        open STDERR, '>&', \*STDOUT;
        if ($ASAN) {
            chomp(my $lib = `gcc -print-file-name=libasan.so`);
            $ENV{LD_PRELOAD} = $lib;
            # The children run as another user: a folder they can write.
            my $d = "$self->{run}/sanitizer";
            mkdir $d;
            chmod 01777, $d;
            # httpd installs its own SIGSEGV handler; ASan must keep its own.
            $ENV{ASAN_OPTIONS} = "detect_leaks=0:allow_user_segv_handler=0:log_path=$d/asan";
            $ENV{UBSAN_OPTIONS} = "print_stacktrace=1:log_path=$d/ubsan";
        }
        # wrap => [cmd, args...]: httpd runs under it (unshare, ...).
        { exec @{ $self->{opts}{wrap} // [] }, $HTTPD, '-f', $self->{conf},
               '-DFOREGROUND' };
        POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    # Up once it answers, not once it accepts: httpd listens before its
    # post_config hooks (the module's crash recovery) have run, so a
    # connect alone would let a test look at the volume mid-recovery.
    # The bound only proves liveness (generous for a loaded machine).
    my $deadline = time + 60;
    while (time < $deadline) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $self->{port}, Timeout => 1);
        if ($s) {
            print $s "OPTIONS * HTTP/1.0\r\n\r\n";
            my $rin = '';
            vec($rin, fileno($s), 1) = 1;
            my $line = select($rin, undef, undef, 5) > 0 ? <$s> : undef;
            close $s;
            return if defined $line && $line =~ m{^HTTP/};
        }
        if (waitpid($pid, POSIX::WNOHANG()) == $pid) {
            # Who holds the port, if that was why.
            die "httpd exited at start:\n" . $self->log_tail
                . `ss -tanpe 'sport = :$self->{port}' 2>&1`;
        }
        sleep 0.05;
    }
    die "httpd did not answer on port $self->{port}:\n" . $self->log_tail;
}

sub url    { my ($s, $path) = @_; $s->{url} . ($path // '') }
sub live   { $_[0]{live} }
sub volume { $_[0]{volume} }
sub port   { $_[0]{port} }
sub pid    { $_[0]{pid} }

# Pids of the httpd children (the processes that serve requests).
sub children {
    my ($self) = @_;
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh>;
        close $fh;
        next unless $line;
        my ($pid, $ppid) = $line =~ /^(\d+) \(.*?\) \S (\d+)/ or next;
        push @kids, $pid if $ppid == $self->{pid};
    }
    return @kids;
}

sub log_tail {
    my ($self, $n) = @_;
    $n //= 40;
    my $out = '';
    for my $f ("$self->{run}/error.log", "$self->{run}/stdout.log") {
        next unless -s $f;
        $out .= "== $f\n" . `tail -n $n '$f'`;
    }
    return $out;
}

sub error_log { slurp("$_[0]{run}/error.log") // '' }

sub stop {
    my ($self) = @_;
    return unless $self->{pid};
    kill 'TERM', $self->{pid};
    my $deadline = time + 10;
    while (time < $deadline) {
        last if waitpid($self->{pid}, POSIX::WNOHANG()) == $self->{pid};
        sleep 0.05;
    }
    kill 'KILL', $self->{pid} if kill 0, $self->{pid};
    waitpid($self->{pid}, 0);
    delete $self->{pid};
}

# Kills the whole server at once, as a crash would.
sub crash {
    my ($self) = @_;
    kill 'KILL', -$self->{pid};
    waitpid($self->{pid}, 0);
    # Children are reparented, not reaped by us: wait until they are gone.
    for (1 .. 200) {
        last unless kill 0, -$self->{pid};
        sleep 0.01;
    }
    delete $self->{pid};
}

sub restart {
    my ($self) = @_;
    $self->stop;
    $self->_launch;
}

sub DESTROY {
    my ($self) = @_;
    local $?;
    delete $LIVE{"$self"};
    return if $self->{destroyed}++;
    return if ($self->{owner} // $$) != $$;   # a forked child's copy
    $self->stop;
    $self->_asan_check if $ASAN;
    my $tb = Test::More->builder;
    if ($tb->is_passing && !$self->{keep}) {
        remove_tree($self->{base});
    } else {
        Test::More::diag("kept $self->{base} for inspection\n" . $self->log_tail);
    }
}

# Fails the test if httpd left an ASan or UBSan report (see $ASAN).
sub _asan_check {
    my ($self) = @_;
    my @reports = grep { -s $_ } glob("$self->{run}/sanitizer/*");
    # UBSan's reports, and any written before the log file could be
    # opened, go to stderr: httpd's error log once it is running.
    push @reports, grep { (slurp($_) // '') =~ /AddressSanitizer|runtime error:/ }
        "$self->{run}/stdout.log", "$self->{run}/error.log";
    if (my $dir = $ENV{MIRRORDAV_ASAN_LOG_DIR}) {
        system('cp', @reports, $dir) if @reports;
    }
    my $text = join '', map { "== $_\n" . (slurp($_) // '') } @reports;
    $self->{keep} = 1 if @reports;
    Test::More::ok(!@reports, 'httpd left no ASan or UBSan report')
        or Test::More::diag(substr($text, 0, 8000)) if @reports;
}

# ---------------------------------------------------------------- HTTP

sub http { HTTP::Tiny->new(timeout => 120, keep_alive => 0) }

# request(METHOD, PATH, {headers...}, CONTENT) -> HTTP::Tiny response
sub request {
    my ($self, $method, $path, $headers, $content) = @_;
    my %args = (headers => $headers // {});
    $args{content} = $content if defined $content;
    return http()->request($method, $self->url($path), \%args);
}

# raw_request(METHOD, TARGET, {headers...}, CONTENT): sends the request line
# exactly as given (no normalisation or escaping of TARGET: for dot segments,
# encoded slashes, NULs) on a fresh connection; returns
# { status, reason, headers => {lowercased name => value}, content }.
sub raw_request {
    my ($self, $method, $target, $headers, $content) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $self->{port}, Timeout => 10)
        or die "connect: $!";
    binmode $sock;
    my $req = "$method $target HTTP/1.1\r\nHost: 127.0.0.1:$self->{port}\r\n"
            . "Connection: close\r\n";
    $headers //= {};
    $req .= "$_: $headers->{$_}\r\n" for sort keys %$headers;
    $req .= "Content-Length: " . length($content) . "\r\n" if defined $content;
    $req .= "\r\n" . ($content // '');
    print $sock $req;
    my ($buf, $deadline) = ('', time + 120);
    my $sel = '';
    vec($sel, fileno($sock), 1) = 1;
    while (time < $deadline) {
        my $rin = $sel;
        next unless select($rin, undef, undef, 1);
        my $n = sysread($sock, $buf, 65536, length $buf);
        last unless $n;
    }
    close $sock;
    my ($head, $body) = split /\r\n\r\n/, $buf, 2;
    my ($status_line, @lines) = split /\r\n/, $head // '';
    my ($status, $reason) = ($status_line // '') =~ m{^HTTP/\S+ (\d{3}) ?(.*)$};
    my %h;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        $h{lc $k} = exists $h{lc $k} ? "$h{lc $k}, $v" : $v;
    }
    $body //= '';
    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        my $out = '';
        while ($body =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $len = hex $1;
            last unless $len;
            $out .= substr($body, 0, $len, '');
            $body =~ s/^\r\n//;
        }
        $body = $out;
    }
    return { status => $status // 599, reason => $reason // '',
             headers => \%h, content => $body };
}

sub put    { my ($s, $p, $c, $h) = @_; $s->request('PUT', $p, $h, $c) }
sub get    { my ($s, $p, $h) = @_; $s->request('GET', $p, $h) }
sub mkcol  { my ($s, $p) = @_; $s->request('MKCOL', $p) }
sub delete { my ($s, $p) = @_; $s->request('DELETE', $p) }

sub propfind {
    my ($self, $path, $depth, $body) = @_;
    $body //= '<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>';
    return $self->request('PROPFIND', $path,
        { Depth => $depth // 1, 'Content-Type' => 'application/xml' }, $body);
}

# ---------------------------------------------------------------- files

sub slurp {
    my ($f) = @_;
    open my $fh, '<:raw', $f or return undef;
    local $/;
    my $d = <$fh>;
    close $fh;
    return $d;
}

sub spew {
    my ($f, $d) = @_;
    open my $fh, '>:raw', $f or die "$f: $!";
    print $fh $d;
    close $fh or die "$f: $!";
}

sub sha1_file {
    my ($f) = @_;
    my $out = `sha1sum '$f'`;
    return (split ' ', $out)[0];
}

# A file of SIZE pseudo-random bytes (fast: from openssl's generator).
sub random_file {
    my ($path, $size) = @_;
    system("head -c $size /dev/urandom > '$path'") == 0 or die "random_file";
    return $path;
}

1;

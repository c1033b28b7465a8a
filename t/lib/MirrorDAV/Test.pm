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

# start_server(fsync => 'On'|'Off', conf_extra => "...")
sub start_server {
    my ($class, %o) = @_;
    my $base = File::Temp::tempdir('mirrordav-t-XXXXXX', TMPDIR => 1,
                                   CLEANUP => 0);
    chmod 0755, $base;
    my $self = bless {
        base   => $base,
        volume => "$base/volume",
        run    => "$base/run",
        port   => free_port(),
        opts   => \%o,
    }, $class;
    $self->{live} = "$self->{volume}/live";
    $self->{url}  = "http://127.0.0.1:$self->{port}";
    make_path($self->{run}, $self->{volume});
    system("$TOP/script/init-volume", $self->{volume}) == 0
        or die "init-volume failed";
    chomp(my $conf = `$TOP/script/render-conf '$self->{run}' '$self->{volume}' $self->{port} '$BUILD/.libs/mod_mirrordav.so' ${\($o{fsync} // 'On')} ${\($o{log_level} // 'info')}`);
    die "render-conf failed" if $?;
    if (my $extra = $o{conf_extra}) {
        open my $fh, '>>', $conf or die;
        print $fh "\n$extra\n";
        close $fh;
    }
    $self->{conf} = $conf;
    $self->_launch;
    return $self;
}

sub _launch {
    my ($self) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDOUT, '>>', "$self->{run}/stdout.log";
        open STDERR, '>&', \*STDOUT;
        { exec 'apache2', '-f', $self->{conf}, '-DFOREGROUND' };
        POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    my $deadline = time + 15;
    while (time < $deadline) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $self->{port}, Timeout => 1);
        if ($s) { close $s; return }
        if (waitpid($pid, POSIX::WNOHANG()) == $pid) {
            die "httpd exited at start:\n" . $self->log_tail;
        }
        sleep 0.05;
    }
    die "httpd did not listen on port $self->{port}:\n" . $self->log_tail;
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
    my @kids = $self->children;
    kill 'KILL', $self->{pid}, @kids;
    waitpid($self->{pid}, 0);
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
    $self->stop;
    my $tb = Test::More->builder;
    if ($tb->is_passing) {
        remove_tree($self->{base});
    } else {
        Test::More::diag("kept $self->{base} for inspection\n" . $self->log_tail);
    }
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

/*
 * config_site.h - compile-time settings of pjproject for Centralino.
 *
 * sipstack/build.sh copies this file to pjlib/include/pj/config_site.h before
 * configure. Any change here changes the build cache key, so the next
 * `sipstack/build.sh` rebuilds the pjsua2 wheel (with a new local version).
 *
 * The values are sized for one switchboard process. Most of them are
 * preallocated at libCreate()/libInit(), so size them to need (see
 * PJMEDIA_MAX_SDP_MEDIA below for the largest share).
 */

/* Release build: assert() compiled out. Also passed as -DNDEBUG in CFLAGS,
 * because some translation units include <assert.h> before this file. */
#ifndef NDEBUG
#  define NDEBUG 1
#endif

/* Concurrent calls per process. pjproject's default (and the PyPI wheel) is
 * 4; a switchboard needs >= 128 and a bridged caller+agent takes 2 slots.
 * uaConfig.maxCalls above this value is silently clamped to it. */
#define PJSUA_MAX_CALLS                 256

/* Sockets in the ioqueue: each call holds an RTP and an RTCP socket
 * (2 x 256 = 512), plus SIP transports, with headroom. Built with
 * --enable-epoll, so this is not bounded by select()'s FD_SETSIZE. */
#define PJ_IOQUEUE_MAX_HANDLES          1024

/* WAV players (prompts, music on hold) per process: default 32. Allows a
 * player per call plus shared prompts. */
#define PJSUA_MAX_PLAYERS               512

/* WAV recorders (voicemail, call recording) per process: default 32. */
#define PJSUA_MAX_RECORDERS             512

/* Conference bridge slots: every call, player and recorder takes one port,
 * plus a few for the (null) sound device and tone generators. This is the
 * default of medConfig.maxMediaPorts (pjproject default: 254). */
#define PJSUA_MAX_CONF_PORTS            (PJSUA_MAX_CALLS + PJSUA_MAX_PLAYERS + \
                                         PJSUA_MAX_RECORDERS + 32)

/* Audio only: no video code, no video device or codec probing. */
#define PJMEDIA_HAS_VIDEO               0

/* Null audio device: the server has no sound card
 * (ep.audDevManager().setNullDev()). */
#define PJMEDIA_AUDIO_DEV_HAS_NULL_AUDIO 1

/* Media lines per SDP offer (default 16). PJSUA_MAX_CALL_MEDIA follows it,
 * and each of the 256 call slots preallocates that many media: 16 -> about
 * 155 kB per slot, 4 -> about 39 kB (RSS after libCreate 60 MB -> 32 MB).
 * An offer with more than 4 m= lines is refused; no phone or gateway of
 * ours sends one. */
#define PJMEDIA_MAX_SDP_MEDIA           4

/* RTCP feedback capabilities (RFC 4585) kept per media: default 16. Each
 * call slot holds them four times over (audio and video stream info, current
 * and provisional media), about 21 kB of the 39 kB per slot above: 16 -> 4
 * takes the 256 slots from 10.4 MB to 4.9 MB of RSS. We send no RTCP-FB
 * (video only, and video is off); a remote SDP's a=rtcp-fb lines past the
 * fourth are ignored (pjmedia stops reading them there). */
#define PJMEDIA_RTCP_FB_MAX_CAP         4

/* Presence buddies: default 256 x 1 kB. The switchboard subscribes to
 * nobody's presence. */
#define PJSUA_MAX_BUDDIES               1

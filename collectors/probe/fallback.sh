# fleetdeck probe, shell fallback for nodes without python3 (POSIX sh + awk + df).
# Usage: sh -c "$SCRIPT" fleetdeck-probe INTERVAL_S MODE [PATH...]
#   MODE: once (one sample, exit) | loop | link (loop, exit when stdin closes)
# Prints the same JSON lines as the Python probe (fewer fields: no events, no job ids).
# @GPU_QUERY@ and @PROBE_VERSION@ are filled in by collectors.probe.

interval=${1:-5}
mode=${2:-loop}
if [ "$#" -ge 2 ]; then shift 2; else shift "$#"; fi
[ "$#" -eq 0 ] && set -- /

# Drain stdin (the launcher may send the Python payload); in link mode its EOF stops the probe.
# A background job's stdin would be /dev/null, so hand it over on fd 3.
exec 3<&0 </dev/null
if [ "$mode" = link ]; then
    (cat <&3 >/dev/null 2>&1; kill "$$" 2>/dev/null) &
else
    (cat <&3 >/dev/null 2>&1) &
fi
exec 3<&-

esc() { printf '%s' "$1" | awk 'BEGIN{ORS=""} {gsub(/\\/,"\\\\"); gsub(/"/,"\\\""); gsub(/\t/," "); if (NR>1) print " "; print}'; }

now() {
    t=$(date +%s.%N 2>/dev/null)
    case "$t" in *N*|"") t=$(date +%s) ;; esac
    printf '%s' "$t"
}

host=$(esc "$(uname -n)")
kernel=$(esc "$(uname -r)")
cpu_model=$(awk -F: '/^(model name|Model|cpu model|Hardware)[ \t]*:/ {sub(/^[ \t]+/,"",$2); gsub(/[ \t]+/," ",$2); print $2; exit}' /proc/cpuinfo 2>/dev/null)
cpu_model=$(esc "$cpu_model")
phys=""
for d in /sys/class/net/*; do
    [ -e "$d/device" ] && phys="$phys${d##*/},"
done
smi=$(command -v nvidia-smi 2>/dev/null)
if [ -n "$cpu_model" ]; then cm="\"$cpu_model\""; else cm=null; fi

printf '{"type":"hello","v":1,"probe_version":"@PROBE_VERSION@","mode":"shell","ts":%s,"python_version":null,"hostname":"%s","kernel":"%s","pid":%s,"interval_s":%s}\n' \
    "$(now)" "$host" "$kernel" "$$" "$interval"

host_json() {
    awk -v prev="$1" -v phys="$phys" -v host="$host" -v kernel="$kernel" -v cm="$cm" '
    function num(v) { return (v == "" ? "null" : v) }
    FILENAME == "/proc/stat" && /^cpu/ {
        b = 0; t = 0
        for (i = 2; i <= 9 && i <= NF; i++) t += $i
        b = t - $5 - $6
        names[n++] = $1; busy[$1] = b; tot[$1] = t
        next
    }
    FILENAME == "/proc/meminfo" { sub(":", "", $1); mem[$1] = $2 * 1024; next }
    FILENAME == "/proc/loadavg" { l1 = $1; l5 = $2; l15 = $3; next }
    FILENAME == "/proc/uptime" { up = $1; next }
    FILENAME == "/proc/net/dev" && FNR > 2 {
        split($0, a, ":"); name = a[1]; gsub(/ /, "", name); split(a[2], c, " ")
        if (name == "lo") next
        allrx += c[1]; alltx += c[9]
        if (index("," phys, "," name ",")) { prx += c[1]; ptx += c[9]; hasp = 1 }
        next
    }
    END {
        np = split(prev, pv, ",")
        for (i = 1; i <= np; i++) { split(pv[i], kv, ":"); pb[kv[1]] = kv[2]; pt[kv[1]] = kv[3] }
        state = ""; cores = ""; ncpu = 0; util = "null"
        for (i = 0; i < n; i++) {
            k = names[i]; state = state (state == "" ? "" : ",") k ":" busy[k] ":" tot[k]
            u = "null"
            if ((k in pt) && tot[k] > pt[k]) {
                v = 100 * (busy[k] - pb[k]) / (tot[k] - pt[k])
                if (v < 0) v = 0
                if (v > 100) v = 100
                u = sprintf("%.2f", v)
            }
            if (k == "cpu") util = u
            else { ncpu++; if (u != "null") cores = cores (cores == "" ? "" : ",") u }
        }
        if (!("MemAvailable" in mem)) mem["MemAvailable"] = mem["MemFree"] + mem["Buffers"] + mem["Cached"]
        rx = hasp ? prx : allrx; tx = hasp ? ptx : alltx
        printf "%s {\"hostname\":\"%s\",\"kernel\":\"%s\",\"cpu_model\":%s,\"uptime_s\":%s,", state, host, kernel, cm, num(up)
        printf "\"cpu_count\":%d,\"cpu_util_pct\":%s,\"per_core_util_pct\":[%s],", ncpu, util, cores
        printf "\"load1\":%s,\"load5\":%s,\"load15\":%s,", num(l1), num(l5), num(l15)
        printf "\"mem_total_bytes\":%.0f,\"mem_used_bytes\":%.0f,\"mem_available_bytes\":%.0f,", mem["MemTotal"], mem["MemTotal"] - mem["MemAvailable"], mem["MemAvailable"]
        printf "\"swap_total_bytes\":%.0f,\"swap_used_bytes\":%.0f,", mem["SwapTotal"], mem["SwapTotal"] - mem["SwapFree"]
        printf "\"net_rx_bytes\":%.0f,\"net_tx_bytes\":%.0f}\n", rx, tx
    }' /proc/stat /proc/meminfo /proc/loadavg /proc/uptime /proc/net/dev 2>/dev/null
}

disks_json() {  # prints DISKS<\001>ERRORS
    out=""
    errs=""
    for p in "$@"; do
        row=$(df -P -k "$p" 2>/dev/null | awk 'NR == 2 {printf "%.0f %.0f", $2 * 1024, $3 * 1024}')
        if [ -n "$row" ]; then
            out="$out${out:+,}{\"path\":\"$(esc "$p")\",\"total_bytes\":${row% *},\"used_bytes\":${row#* }}"
        else
            errs="$errs${errs:+,}\"disk $(esc "$p"): df failed\""
        fi
    done
    printf '%s\001%s' "$out" "$errs"
}

gpus_json() {
    "$smi" --query-gpu=@GPU_QUERY@ --format=csv,noheader,nounits 2>&1 | awk -F', *' '
    function na(v) { v = tolower(v); gsub(/[\[\]]/, "", v); return v == "" || v == "n/a" || v ~ /not supported|unknown|insufficient|not available|lost/ }
    function n(v) { return na(v) ? "null" : v + 0 }
    function big(v) { return na(v) ? "null" : sprintf("%.0f", v * 1048576) }
    function s(v) { if (na(v)) return "null"; gsub(/\\/, "\\\\", v); gsub(/"/, "\\\"", v); return "\"" v "\"" }
    function b(v) { v = tolower(v); return v ~ /^(yes|enabled|1)$/ ? "true" : (v ~ /^(no|disabled|0)$/ ? "false" : "null") }
    NF < 17 { bad = bad (bad == "" ? "" : " ") $0; next }
    {
        rp = (na($14) && na($15)) ? "null" : sprintf("%.0f", (na($14) ? 0 : $14) + (na($15) ? 0 : $15))
        printf "%s{\"index\":%s,\"uuid\":%s,\"model\":%s,\"mem_total_bytes\":%s,\"mem_used_bytes\":%s,", (k++ ? "," : ""), n($1), s($2), s($3), big($4), big($5)
        printf "\"util_pct\":%s,\"mem_util_pct\":%s,\"temp_c\":%s,\"power_w\":%s,\"power_limit_w\":%s,", n($6), n($7), n($8), n($9), n($10)
        printf "\"sm_clock_mhz\":%s,\"ecc_corrected\":%s,\"ecc_uncorrected\":%s,\"retired_pages\":%s,", n($11), n($12), n($13), rp
        printf "\"retired_pending\":%s,\"remap_failure\":null,\"mig_mode\":%s,\"remap_pending\":null}", b($16), b($17)
    }
    END { if (bad != "") { gsub(/\\/, "\\\\", bad); gsub(/"/, "\\\"", bad); printf "\001%s", bad } }'
}

procs_json() {
    sep=""
    "$smi" --query-compute-apps=gpu_uuid,pid,used_memory --format=csv,noheader,nounits 2>/dev/null |
    while IFS=', ' read -r uuid pid mem; do
        case "$pid" in ''|*[!0-9]*) continue ;; esac
        cid=$(awk 'match($0, /[0-9a-f]{64}/) { print substr($0, RSTART, 64); exit }' "/proc/$pid/cgroup" 2>/dev/null)
        case "$mem" in ''|*[!0-9]*) mb=null ;; *) mb=$((mem * 1048576)) ;; esac
        printf '%s{"gpu_index":null,"uuid":"%s","pid":%s,"gpu_mem_used_bytes":%s,"command":null,"container_id":%s,"job_id":null}' \
            "$sep" "$(esc "$uuid")" "$pid" "$mb" "$( [ -n "$cid" ] && printf '"%s"' "$cid" || printf null)"
        sep=,
    done
}

SOH=$(printf '\001')
prev=""
seq=0
out=$(host_json "")
prev=${out%% *}
if [ "$mode" = once ]; then sleep 1; else sleep "$interval"; fi
while :; do
    errs=""
    ts=$(now)
    out=$(host_json "$prev")
    if [ -n "$out" ]; then prev=${out%% *}; hj=${out#* }; else hj="{}"; errs="\"host: /proc unreadable\""; fi
    dj=$(disks_json "$@")
    de=${dj#*$SOH}
    dj=${dj%%$SOH*}
    [ -n "$de" ] && errs="$errs${errs:+,}$de"
    src=none; gj=""; pj=""
    if [ -n "$smi" ]; then
        gj=$(gpus_json)
        case "$gj" in
            *"$SOH"*)
                errs="$errs${errs:+,}\"nvidia-smi: ${gj#*$SOH}\""
                gj=${gj%%$SOH*} ;;
        esac
        if [ -n "$gj" ]; then src=nvidia-smi; pj=$(procs_json); fi
    fi
    seq=$((seq + 1))
    printf '{"type":"sample","v":1,"seq":%s,"ts":%s,"interval_s":%s,"host":%s,"disks":[%s],"gpu_source":"%s","driver_version":null,"gpus":[%s],"procs":[%s],"events":[],"errors":[%s]}\n' \
        "$seq" "$ts" "$interval" "$hj" "$dj" "$src" "$gj" "$pj" "$errs" || exit 0
    [ "$mode" = once ] && exit 0
    sleep "$interval"
done

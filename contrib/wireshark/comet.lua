-- Wireshark / tshark dissector for the COMET header (EtherType 0xCCCC), as specified in
-- docs/comet-header.md.
--   tshark -X lua_script:contrib/wireshark/comet.lua -r capture.pcap -V
-- or copy into your Wireshark plugins folder.

local comet = Proto("comet", "COMET forwarding-key header")

local f_version = ProtoField.uint8("comet.version", "Version", base.DEC, nil, 0xf0)
local f_flags = ProtoField.uint8("comet.flags", "Flags", base.HEX, nil, 0x0f)
local f_index = ProtoField.uint8("comet.index", "Index", base.DEC)
local f_length = ProtoField.uint8("comet.length", "Length", base.DEC)
local f_reserved = ProtoField.uint8("comet.reserved", "Reserved", base.HEX)
local f_inner = ProtoField.uint16("comet.inner_protocol", "Inner protocol", base.HEX,
    { [0x0800] = "IPv4", [0x86dd] = "IPv6" })
local f_keys = ProtoField.bytes("comet.keys", "Keys")
local f_key = ProtoField.uint8("comet.key", "Key", base.HEX)
local f_current = ProtoField.uint8("comet.current_key", "Current key", base.HEX)
local f_complete = ProtoField.bool("comet.complete", "Path complete (decapsulate)")

comet.fields = { f_version, f_flags, f_index, f_length, f_reserved, f_inner, f_keys, f_key,
    f_current, f_complete }

local e_malformed = ProtoExpert.new("comet.malformed", "Malformed COMET header",
    expert.group.MALFORMED, expert.severity.ERROR)
comet.experts = { e_malformed }

local ethertype_table = DissectorTable.get("ethertype")

function comet.dissector(buffer, pinfo, tree)
    local len = buffer:len()
    pinfo.cols.protocol = "COMET"
    local subtree = tree:add(comet, buffer(0, math.min(len, 6)))
    if len < 6 then
        subtree:add_proto_expert_info(e_malformed, "truncated fixed header")
        return
    end
    local version = bit.rshift(buffer(0, 1):uint(), 4)
    local index = buffer(1, 1):uint()
    local length = buffer(2, 1):uint()
    local inner = buffer(4, 2):uint()
    subtree:add(f_version, buffer(0, 1))
    subtree:add(f_flags, buffer(0, 1))
    subtree:add(f_index, buffer(1, 1))
    subtree:add(f_length, buffer(2, 1))
    subtree:add(f_reserved, buffer(3, 1))
    subtree:add(f_inner, buffer(4, 2))
    if version ~= 1 or length == 0 or index > length or len < 6 + length then
        subtree:add_proto_expert_info(e_malformed, "bad version, index, length or truncated keys")
        return
    end
    subtree:set_len(6 + length)
    local keys = subtree:add(f_keys, buffer(6, length))
    for i = 0, length - 1 do
        keys:add(f_key, buffer(6 + i, 1)):append_text(string.format(" (hop %d)", i))
    end
    local complete = index == length
    subtree:add(f_complete, complete)
    local info
    if complete then
        info = string.format("COMET path complete (%d keys), decapsulate", length)
    else
        subtree:add(f_current, buffer(6 + index, 1))
        info = string.format("COMET key %02x (hop %d of %d)", buffer(6 + index, 1):uint(), index + 1, length)
    end
    subtree:append_text(string.format(", index %d/%d", index, length))
    pinfo.cols.info = info
    local payload = buffer(6 + length)
    local next_dissector = ethertype_table:get_dissector(inner)
    if next_dissector ~= nil then
        next_dissector:call(payload:tvb(), pinfo, tree)
        pinfo.cols.info:prepend(info .. " | ")
    end
end

ethertype_table:add(0xcccc, comet)
local gre_table = DissectorTable.get("gre.proto")
if gre_table ~= nil then
    gre_table:add(0xcccc, comet)
end

#-----
# Name:          Alcatel-Lucent SR OS Python Cache Support Example
# Purpose:       This script is used to demonstrate SR OS python cache support for
#               the following use case:
#               RADIUS sever returns multiple Class attributes in
#               access-accept, these Class attributes need to be reflected
#               in accounting request packets
# Port:          Python 3 (brasa): attribute values, cache keys and cache values are
#               bytes, so lengths are written with bytes([n]) and read back as ints
#               by indexing; the logic is otherwise the original's.
#-----
from alc import cache
from alc import radius
import struct
def main():
    radius_header = radius.header()
    if radius_header['code'] == 2: # in case of access-accept
        entry_key = radius.attributes.get(1) # use user-name as the cache entry
                                           # key
        if entry_key == b"": #drop the packet if there is no user-name present
            radius.drop()
            return
        class_list = radius.attributes.getTuple(25) # get a list of Class
                                                    # attributes
        if class_list == (): #drop the packet if there is no class present
            radius.drop()
            return
        class_len_str = b''
        class_str = b''
        class_count = 0
        for radius_class in class_list:
            class_len_str += bytes([len(radius_class)])
            class_str += radius_class
            class_count += 1
        entry_val = bytes([class_count])+class_len_str+class_str
        try:
            cache.save(entry_val,entry_key)
        except:
            radius.drop() #drop the packet if cache.save fails
            return

    elif radius_header['code'] == 4: # in case of acct-request
        entry_key = radius.attributes.get(1)
        if entry_key == b"": #drop the packet if there is no user-name present
            radius.drop()
            return
        try:
            entry_val = cache.retrieve(entry_key)
        except:#drop the packet if cache.retrieve fails
            radius.drop()
            return
        class_count = entry_val[0]
        pos = class_count+1
        class_list = []
        for i in range(class_count):
            class_len = entry_val[i+1]
            class_list.append(entry_val[pos:pos+class_len])
            pos += class_len
        radius.attributes.set(25,tuple(class_list))
        acct_type=struct.unpack('>I',radius.attributes.get(40))[0]
        if acct_type == 2: # in case of acct-stop
            cache.clear(entry_key) # remove the cache entry
        elif acct_type == 3: # in case of interim-update
            try:
                cache.set_lifetime(entry_key,900) # reset the lifetime
            except:#drop the packet if cache.set_lifetime fails
                radius.drop()
                return

main()

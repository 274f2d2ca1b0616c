"""Store: the tables feedgen indexes into, the database they live in, and the statements that write them.

The first stage every other stage reads or writes through; it imports no other part of feedgen.
"""

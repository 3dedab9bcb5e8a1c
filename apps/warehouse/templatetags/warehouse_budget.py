"""`{% fallback_budget_left user as budget %}`: today's remaining warehouse budget for the panel and list."""
from django import template

from apps.warehouse.selectors import BudgetLeft, fallback_budget_left

register = template.Library()


@register.simple_tag
def fallback_budget_left_for(user) -> BudgetLeft:
    return fallback_budget_left(user=user)
